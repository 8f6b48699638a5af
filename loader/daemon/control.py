"""The client of `fw-load run`'s control socket: `fw-load apply` hands its request to the daemon.

On the fast path of fw-load apply, so it imports only os and two C modules (_socket, _json):
socket, json, typing and even `from __future__` cost more than the rest of the route.
"""

import _json
import _socket
import os

from fwc.loader.errors import LoaderError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

CONTROL_DIR = "/run/fwc"
# the same defaults as pins.pin_root, kept here so the client does not import pins
DEFAULT_ROOT = "/sys/fs/bpf/fwc"
ROOT_ENV = "FWC_PIN_ROOT"
# a sun_path holds 108 bytes with its NUL; a longer path is named by the pin root's digest
_MAX_PATH = 107
# an apply that reloads a large program and swaps many links stays well under this
_REPLY_TIMEOUT = 600.0
# deeper messages (none of ours) go to json.dumps, which also reports a circular one
_MAX_DEPTH = 16
# a reply in the daemon's own shape, as encode writes it: read without json
_REPLY_HEAD = '{"code":'
_REPLY_STDOUT = ',"stdout":"'
_REPLY_STDERR = ',"stderr":"'


def pin_root(override: str | None = None) -> str:
    """The absolute pin root: `--pin-root`, else `$FWC_PIN_ROOT`, else /sys/fs/bpf/fwc."""
    return os.path.abspath(override or os.environ.get(ROOT_ENV) or DEFAULT_ROOT)


def socket_path(root: str) -> str:
    """The daemon's socket for pin root `root` in this network namespace.

    The namespace is part of the name: a daemon attaches to the interfaces of its own
    namespace, so a client elsewhere that shares the pin root must not reach it.
    """
    netns = os.stat("/proc/self/ns/net").st_ino
    name = os.path.abspath(root).strip("/").replace("/", "-") or "root"
    path = os.path.join(CONTROL_DIR, f"{name}@{netns}.sock")
    if len(path.encode()) <= _MAX_PATH:
        return path
    # imported here: only an unusually long pin root needs it
    import hashlib

    return os.path.join(
        CONTROL_DIR, f"{hashlib.sha256(name.encode()).hexdigest()[:32]}@{netns}.sock"
    )


def encode(message: "dict[str, Any]") -> bytes:
    """One message as a line: the bytes of json.dumps(message, separators=(",", ":"))."""
    parts: list[str] = []
    if not _encode_into(message, parts, 0):
        import json

        parts = [json.dumps(message, separators=(",", ":"))]
    parts.append("\n")
    return "".join(parts).encode()


def _encode_into(value: object, parts: list[str], depth: int) -> bool:
    """Appends `value` as json.dumps writes it; False for a value it leaves to json.dumps
    (a float, a non-string key, a nesting deeper than _MAX_DEPTH, any other type)."""
    if isinstance(value, str):
        parts.append(_json.encode_basestring_ascii(value))
    elif value is None or isinstance(value, bool):
        parts.append("null" if value is None else "true" if value else "false")
    elif isinstance(value, int):
        parts.append(int.__repr__(value))
    elif depth >= _MAX_DEPTH:
        return False
    elif isinstance(value, list | tuple):
        parts.append("[")
        for i, item in enumerate(value):
            if i:
                parts.append(",")
            if not _encode_into(item, parts, depth + 1):
                return False
        parts.append("]")
    elif isinstance(value, dict):
        parts.append("{")
        for i, (key, item) in enumerate(value.items()):
            if not isinstance(key, str):
                return False
            parts.append("," if i else "")
            parts.append(_json.encode_basestring_ascii(key))
            parts.append(":")
            if not _encode_into(item, parts, depth + 1):
                return False
        parts.append("}")
    else:
        return False
    return True


def decode(line: bytes) -> "dict[str, Any]":
    """One message; ValueError when the line is not a JSON object."""
    reply = _reply(line)
    if reply is not None:
        return reply
    import json

    message = json.loads(line)
    if not isinstance(message, dict):
        raise ValueError("not a JSON object")
    return message


def _reply(line: bytes) -> "dict[str, Any] | None":
    """A reply exactly as encode writes {code, stdout, stderr}, read as json.loads would;
    None for any other line (json.loads then decides)."""
    try:
        text = line.decode()
        if not text.startswith(_REPLY_HEAD):
            return None
        comma = text.find(",", len(_REPLY_HEAD))
        number = text[len(_REPLY_HEAD) : comma]
        digits = number.removeprefix("-")
        # JSON's integer grammar, and short enough for any int() limit
        if not (0 < len(digits) <= 18 and digits.isascii() and digits.isdigit()):
            return None
        if (digits[0] == "0" and digits != "0") or not text.startswith(_REPLY_STDOUT, comma):
            return None
        stdout, end = _json.scanstring(text, comma + len(_REPLY_STDOUT))
        if not text.startswith(_REPLY_STDERR, end):
            return None
        stderr, end = _json.scanstring(text, end + len(_REPLY_STDERR))
    except ValueError:
        return None
    if text[end:] != "}":
        return None
    return {"code": int(number), "stdout": stdout, "stderr": stderr}


def read_line(conn: _socket.socket) -> bytes:
    """Bytes up to the first newline (without it); empty when the peer closed first."""
    chunks: list[bytes] = []
    while True:
        chunk = conn.recv(65536)
        if not chunk:
            return b""
        head, newline, _ = chunk.partition(b"\n")
        chunks.append(head)
        if newline:
            return b"".join(chunks)


def ask(root: str, request: "dict[str, Any]") -> "dict[str, Any] | None":
    """The daemon's reply to `request`; None when no daemon serves `root` here.

    A socket file without a listener (a daemon that died) is the same as none. A daemon that
    accepts and then dies before answering raises LoaderError: whether the update took effect
    is for `fw-load status` to say (the flip is its commit point: old or new, never half).
    """
    path = socket_path(root)
    conn = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
    try:
        try:
            conn.connect(path)
        except (FileNotFoundError, ConnectionRefusedError, NotADirectoryError):
            return None
        except PermissionError as exc:
            raise LoaderError(f"{path}: {exc.strerror}; run it as root") from exc
        conn.settimeout(_REPLY_TIMEOUT)
        try:
            conn.sendall(encode(request))
            line = read_line(conn)
        except OSError as exc:
            raise LoaderError(_lost(path, exc.strerror or str(exc))) from exc
        if not line:
            raise LoaderError(_lost(path, "it closed the connection without a reply"))
        try:
            return decode(line)
        except ValueError as exc:
            raise LoaderError(_lost(path, "its reply is not valid JSON")) from exc
    finally:
        conn.close()


def _lost(path: str, why: str) -> str:
    return (
        f"the fw-load run daemon at {path} did not answer ({why}); the policy is the old or "
        "the new one, `fw-load status` says which"
    )
