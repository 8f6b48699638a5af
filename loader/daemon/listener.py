"""The daemon's HTTP listener: Prometheus metrics (`/metrics`, also `/`), the probes `/healthz`
and `/readyz` (200, or 503 with the reason), and `/status` (JSON)."""

from __future__ import annotations

import json
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.registry import CollectorRegistry

from fwc.loader.daemon.health import Health
from fwc.loader.errors import LoaderError


def parse_addr(addr: str) -> tuple[str, int]:
    host, sep, port = addr.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        raise LoaderError(f"--metrics-addr {addr!r}: expected HOST:PORT with a port 1-65535")
    return host.strip("[]") or "127.0.0.1", int(port)


def _handler(registry: CollectorRegistry, health: Health) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
            if path in ("/", "/metrics"):
                self._send(200, CONTENT_TYPE_LATEST, generate_latest(registry))
            elif path in ("/healthz", "/readyz"):
                ok, reason = health.alive() if path == "/healthz" else health.ready()
                self._send(200 if ok else 503, "text/plain; charset=utf-8", f"{reason}\n".encode())
            elif path == "/status":
                body = json.dumps(health.status(), indent=2, sort_keys=True) + "\n"
                self._send(200, "application/json", body.encode())
            else:
                self._send(404, "text/plain; charset=utf-8", b"not found\n")

        def _send(self, code: int, content_type: str, body: bytes) -> None:
            self.send_response(code)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            # a probe every few seconds is not news for the daemon's log
            return

    return Handler


def serve(addr: str, registry: CollectorRegistry, health: Health) -> ThreadingHTTPServer:
    """Listen on HOST:PORT in a background thread; the server (shut it down with shutdown())."""
    host, port = parse_addr(addr)

    class Server(ThreadingHTTPServer):
        address_family = socket.AF_INET6 if ":" in host else socket.AF_INET
        daemon_threads = True

    try:
        server = Server((host, port), _handler(registry, health))
    except (OSError, ValueError, OverflowError) as exc:
        why = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise LoaderError(f"--metrics-addr {addr}: {why}") from exc
    threading.Thread(target=server.serve_forever, name="fwc-http", daemon=True).start()
    return server
