"""A node for the watch tests and the fleet rehearsal: `fw-load run --watch` in namespace a of
a veth pair, with its own pin root, and its HTTP endpoints read from inside that namespace."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.loader_netns import FWLOAD, Pair, sh

# prints the status code, then the body (urllib raises on 503, whose body is the reason)
_GET = """
import sys, urllib.error, urllib.request
try:
    r = urllib.request.urlopen(sys.argv[1], timeout=5)
    code, body = r.status, r.read()
except urllib.error.HTTPError as e:
    code, body = e.code, e.read()
except OSError as e:
    code, body = 0, str(e).encode()
print(code)
sys.stdout.write(body.decode())
"""


@dataclass
class WatchNode:
    pair: Pair
    port: int
    process: subprocess.Popen[str]
    log: Path

    def get(self, path: str) -> tuple[int, str]:
        """(HTTP status, body) of GET `path` on the node's listener; status 0 if unreachable."""
        url = f"http://127.0.0.1:{self.port}{path}"
        out = sh(*self.pair.exec_a(sys.executable, "-c", _GET, url), timeout=20).stdout
        code, _, body = out.partition("\n")
        return int(code), body

    def status(self) -> dict[str, Any]:
        code, body = self.get("/status")
        if code != 200:
            return {}
        state: dict[str, Any] = json.loads(body)
        return state

    def metric(self, name: str, labels: str = "") -> float | None:
        """The value of the sample `name{labels}` in /metrics (labels as exposed), or None."""
        _, text = self.get("/metrics")
        wanted = f"{name}{{{labels}}}" if labels else name
        for line in text.splitlines():
            sample, _, value = line.rpartition(" ")
            if sample == wanted:
                return float(value)
        return None

    def stderr(self) -> str:
        return self.log.read_text()


@contextmanager
def watch_node(pair: Pair, artifact: Path, port: int, log: Path) -> Iterator[WatchNode]:
    """`fw-load run --watch artifact` in namespace a until the block ends (then SIGTERM, and
    the node's pins removed with the pair)."""
    cmd = pair.nsenter_a(
        FWLOAD, "run", "--watch", str(artifact), "--metrics-addr", f"127.0.0.1:{port}"
    )
    with log.open("w") as err:
        process = subprocess.Popen(
            cmd, stdout=subprocess.DEVNULL, stderr=err, text=True, env=pair.fwload_env()
        )
    node = WatchNode(pair, port, process, log)
    try:
        yield node
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.kill(process.pid, signal.SIGKILL)
                process.wait(timeout=10)
