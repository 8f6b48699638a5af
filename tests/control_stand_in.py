"""A stand-in for `fw-load run`'s control socket: reads requests, sends prepared answers."""

from __future__ import annotations

import os
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from fwc.loader.daemon import control


@contextmanager
def stand_in(root: str, answers: list[bytes | None]) -> Iterator[list[bytes]]:
    """A listener at the socket of `root` that reads a request per connection and sends the
    next answer (None: closes without one); yields the request lines it read."""
    path = control.socket_path(root)
    os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen(4)
    seen: list[bytes] = []

    def serve() -> None:
        for answer in answers:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            with conn:
                seen.append(control.read_line(conn))
                if answer is not None:
                    conn.sendall(answer)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield seen
    finally:
        listener.shutdown(socket.SHUT_RDWR)
        listener.close()
        thread.join(timeout=10)
        os.unlink(path)
