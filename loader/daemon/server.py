"""The daemon's end of the control socket: one request per connection, answered in a thread.

The socket lives in /run/fwc (bpffs holds no sockets), 0600 in a 0700 directory: root only.
"""

from __future__ import annotations

import contextlib
import os
import socket
import sys
import threading
from collections.abc import Callable
from typing import Any

from fwc.loader.daemon import control
from fwc.loader.errors import LoaderError

Handler = Callable[[dict[str, Any]], dict[str, Any]]


class ControlBusy(LoaderError):
    """Another live daemon already answers on this socket."""


class ControlServer:
    """Listens on `control.socket_path(root)` and answers each request with `handler`."""

    def __init__(
        self, root: str, handler: Handler, after_reply: Callable[[], None] | None = None
    ) -> None:
        self.path = control.socket_path(root)
        self._handler = handler
        # work that must not delay the reply (the client's time ends with it)
        self._after_reply = after_reply
        self._sock = _listen(self.path)
        self._thread = threading.Thread(target=self._serve, name="fwc-control", daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return  # closed by close()
            with conn:
                self._answer(conn)

    def _answer(self, conn: socket.socket) -> None:
        try:
            line = control.read_line(conn)
            if not line:
                return
            try:
                request = control.decode(line)
            except ValueError:
                reply = _failure("malformed control request")
            else:
                try:
                    reply = self._handler(request)
                except Exception as exc:  # a bug must not end the control thread
                    print(f"fw-load run: control request failed: {exc!r}", file=sys.stderr)
                    reply = _failure(f"the fw-load run daemon failed: {exc}")
            conn.sendall(control.encode(reply))
        except OSError as exc:
            # the client went away; the request itself ran to its end (or never started)
            print(f"fw-load run: control client lost: {exc}", file=sys.stderr, flush=True)
        finally:
            conn.close()
        if self._after_reply is not None:
            self._after_reply()

    def close(self) -> None:
        """Stop listening and remove the socket file."""
        with contextlib.suppress(OSError):
            self._sock.shutdown(socket.SHUT_RDWR)
        self._sock.close()
        # a request in progress runs to its end: its flip or its rollback
        self._thread.join()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)

    def __enter__(self) -> ControlServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _failure(message: str) -> dict[str, Any]:
    return {"code": 2, "stdout": "", "stderr": f"fw-load apply: {message}\n"}


def _listen(path: str) -> socket.socket:
    """A listening socket at `path`; a stale file of a dead daemon is replaced, a live one not."""
    directory = os.path.dirname(path)
    try:
        os.makedirs(directory, mode=0o700, exist_ok=True)
        os.chmod(directory, 0o700)
    except OSError as exc:
        raise LoaderError(f"{directory}: {exc.strerror or exc}") from exc
    if os.path.exists(path):
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            probe.connect(path)
        except OSError:
            os.unlink(path)
        else:
            raise ControlBusy(f"another fw-load run already serves this pin root ({path})")
        finally:
            probe.close()
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        # the socket is born 0600: no window in which another user could connect
        old_umask = os.umask(0o177)
        try:
            sock.bind(path)
        finally:
            os.umask(old_umask)
        sock.listen(16)
    except OSError as exc:
        sock.close()
        raise LoaderError(f"{path}: {exc.strerror or exc}") from exc
    return sock
