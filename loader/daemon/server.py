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

# a client has this long to send its request: one that sends half and idles is cut off
READ_TIMEOUT = 2.0
# connections being read at once; more are closed at once (a flood must not grow threads)
_MAX_READERS = 16


class ControlBusy(LoaderError):
    """Another live daemon already answers on this socket."""


class ControlServer:
    """Listens on `control.socket_path(root)` and answers each request with `handler`.

    Each connection's request is read in a thread of its own, with a timeout and a size cap,
    so a slow or hostile client never holds up another; the requests themselves run one at
    a time.
    """

    def __init__(
        self, root: str, handler: Handler, after_reply: Callable[[], None] | None = None
    ) -> None:
        self.path = control.socket_path(root)
        self._handler = handler
        # work that must not delay the reply (the client's time ends with it)
        self._after_reply = after_reply
        self._one_at_a_time = threading.Lock()
        self._readers = threading.BoundedSemaphore(_MAX_READERS)
        self._threads: set[threading.Thread] = set()
        self._threads_lock = threading.Lock()
        self._sock = _listen(self.path)
        self._thread = threading.Thread(target=self._serve, name="fwc-control", daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return  # closed by close()
            if not self._readers.acquire(blocking=False):
                conn.close()
                continue
            thread = threading.Thread(
                target=self._connection, args=(conn,), name="fwc-control-conn", daemon=True
            )
            with self._threads_lock:
                self._threads.add(thread)
            thread.start()

    def _connection(self, conn: socket.socket) -> None:
        try:
            with conn:
                self._answer(conn)
        finally:
            self._readers.release()
            with self._threads_lock:
                self._threads.discard(threading.current_thread())

    def _answer(self, conn: socket.socket) -> None:
        conn.settimeout(READ_TIMEOUT)
        try:
            line = control.read_line(conn)
        except control.MessageTooLong:
            _send(conn, _failure(f"control request longer than {control.REQUEST_LIMIT} bytes"))
            return
        except OSError:
            return  # idle past the timeout, or gone: nothing was asked
        if not line:
            return
        try:
            request = control.decode(line)
        except ValueError:
            _send(conn, _failure("malformed control request"))
            return
        # the reply may take as long as the apply: no timeout on it
        conn.settimeout(None)
        with self._one_at_a_time:
            try:
                reply = self._handler(request)
            except Exception as exc:  # a bug must not end the control thread
                print(f"fw-load run: control request failed: {exc!r}", file=sys.stderr)
                reply = _failure(f"the fw-load run daemon failed: {exc}")
            _send(conn, reply)
            conn.close()
            if self._after_reply is not None:
                self._after_reply()

    def close(self) -> None:
        """Stop listening and remove the socket file."""
        with contextlib.suppress(OSError):
            self._sock.shutdown(socket.SHUT_RDWR)
        self._sock.close()
        self._thread.join()
        # a request in progress runs to its end (its flip or its rollback); a reader
        # waits at most READ_TIMEOUT
        with self._threads_lock:
            threads = list(self._threads)
        for thread in threads:
            thread.join()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)

    def __enter__(self) -> ControlServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _send(conn: socket.socket, reply: dict[str, Any]) -> None:
    try:
        conn.sendall(control.encode(reply))
    except OSError as exc:
        # the client went away; the request itself ran to its end (or never started)
        print(f"fw-load run: control client lost: {exc}", file=sys.stderr, flush=True)


def _failure(message: str) -> dict[str, Any]:
    return {"code": 2, "stdout": "", "stderr": f"fw-load apply: {message}\n"}


def _listen(path: str) -> socket.socket:
    """A listening socket at `path`; a stale file of a dead daemon is replaced, a live one not."""
    directory = os.path.dirname(path)
    try:
        os.makedirs(directory, mode=0o700, exist_ok=True)
    except OSError as exc:
        raise LoaderError(f"{directory}: {exc.strerror or exc}") from exc
    # what clients check too: an impostor's directory is refused, never chmod-ed into ours
    control.check_dir(directory)
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
