"""The control socket of `fw-load run`: its path, its messages, and the client that hands the
daemon a `fw-load apply` or `fw-load set` request."""

from __future__ import annotations

import hashlib
import json
import os
import socket
import stat
import struct
from collections.abc import Mapping
from typing import Any

from fwc.loader.errors import LoaderError
from fwc.loader.node import pins

CONTROL_DIR = "/run/fwc"
# a sun_path holds 108 bytes with its NUL; a longer path is named by the pin root's digest
_MAX_PATH = 107
# an apply that reloads a large program and swaps many links stays well under this
_REPLY_TIMEOUT = 600.0
# a request is a few hundred bytes; anything near this is an attack, not a client
REQUEST_LIMIT = 1 << 20
# a report of many interfaces is longer than a request, never this long
_REPLY_LIMIT = 16 << 20
_PEERCRED = struct.Struct("3i")  # struct ucred: pid, uid, gid
# the command-line options an apply request carries (the daemon rebuilds ApplyOptions from them)
FIELDS = (
    "artifact",
    "expect_hash",
    "keep_access",
    "force",
    "offload",
    "replace_foreign",
    "dry_run",
    "no_live_update",
)


def pin_root(override: str | None = None) -> str:
    """The absolute pin root: `--pin-root`, else `$FWC_PIN_ROOT`, else /sys/fs/bpf/fwc."""
    return os.path.abspath(pins.pin_root(override))


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
    return os.path.join(
        CONTROL_DIR, f"{hashlib.sha256(name.encode()).hexdigest()[:32]}@{netns}.sock"
    )


def apply_request(fields: Mapping[str, Any], root: str, as_json: bool) -> dict[str, Any]:
    """The control request of `fw-load apply`: its FIELDS (the artifact's path made absolute),
    the pin root, and this command's SSH session, which the daemon's lockout check must
    protect."""
    options = {name: fields[name] for name in FIELDS}
    options["artifact"] = os.path.abspath(str(options["artifact"]))
    return {
        "command": "apply",
        "root": root,
        "options": options,
        "ssh_connection": os.environ.get("SSH_CONNECTION"),
        "json": as_json,
    }


def set_request(fields: Mapping[str, Any], root: str, as_json: bool) -> dict[str, Any]:
    """The control request of `fw-load set`: the set, its list files (made absolute) and the
    policy, with the pin root."""
    options = {
        "set": fields["set"],
        "add": [os.path.abspath(str(p)) for p in fields["add"] or ()],
        "remove": [os.path.abspath(str(p)) for p in fields["remove"] or ()],
        "policy": fields["policy"],
    }
    return {"command": "set", "root": root, "options": options, "json": as_json}


def encode(message: Mapping[str, Any]) -> bytes:
    """One message as one line of JSON."""
    return json.dumps(message, separators=(",", ":")).encode() + b"\n"


def decode(line: bytes) -> dict[str, Any]:
    """One message; ValueError when the line is not a JSON object."""
    message = json.loads(line)
    if not isinstance(message, dict):
        raise ValueError("not a JSON object")
    return message


class MessageTooLong(ValueError):
    """A peer sent more than the limit without a newline."""


def read_line(conn: socket.socket, limit: int = REQUEST_LIMIT) -> bytes:
    """Bytes up to the first newline (without it); empty when the peer closed first.

    MessageTooLong when `limit` bytes arrive without a newline: nothing is buffered past it.
    """
    chunks: list[bytes] = []
    size = 0
    while True:
        chunk = conn.recv(65536)
        if not chunk:
            return b""
        head, newline, _ = chunk.partition(b"\n")
        chunks.append(head)
        size += len(head)
        if size > limit:
            raise MessageTooLong(f"more than {limit} bytes without a newline")
        if newline:
            return b"".join(chunks)


def check_dir(directory: str) -> None:
    """Refuse a socket directory another user could have placed or could write into: a
    symlink, not a directory, owned by someone other than root or us, or writable by group
    or others (such a directory could hold a socket of an impostor)."""
    try:
        info = os.lstat(directory)
    except FileNotFoundError:
        return
    except OSError as exc:
        raise LoaderError(f"{directory}: {exc.strerror or exc}") from exc
    why = ""
    if stat.S_ISLNK(info.st_mode):
        why = "is a symlink"
    elif not stat.S_ISDIR(info.st_mode):
        why = "is not a directory"
    elif info.st_uid not in (0, os.geteuid()):
        why = f"is owned by uid {info.st_uid}"
    elif info.st_mode & 0o022:
        why = f"is writable by group or others (mode {info.st_mode & 0o777:o})"
    if why:
        raise LoaderError(f"control socket directory {directory} {why}; refusing to use it")


def peer_uid(conn: socket.socket) -> int:
    """The uid of the process at the other end of a unix socket (SO_PEERCRED)."""
    raw = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _PEERCRED.size)
    return int(_PEERCRED.unpack(raw)[1])


def ask(root: str, request: Mapping[str, Any]) -> dict[str, Any] | None:
    """The daemon's reply to `request`; None when no daemon serves `root` here.

    A socket file without a listener (a daemon that died) is the same as none. A daemon that
    accepts and then dies before answering raises LoaderError: whether the update took effect
    is for `fw-load status` to say (the flip is its commit point: old or new, never half).
    """
    path = socket_path(root)
    check_dir(os.path.dirname(path))
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
        try:
            conn.connect(path)
        except (FileNotFoundError, ConnectionRefusedError, NotADirectoryError):
            return None
        except PermissionError as exc:
            raise LoaderError(f"{path}: {exc.strerror}; run it as root") from exc
        uid = peer_uid(conn)
        if uid not in (0, os.geteuid()):
            # the request carries the artifact path and our session: not for an impostor
            raise LoaderError(f"{path} is served by uid {uid}, not root; refusing to use it")
        conn.settimeout(_REPLY_TIMEOUT)
        try:
            conn.sendall(encode(request))
            line = read_line(conn, _REPLY_LIMIT)
        except MessageTooLong as exc:
            raise LoaderError(_lost(path, str(exc))) from exc
        except OSError as exc:
            raise LoaderError(_lost(path, exc.strerror or str(exc))) from exc
    if not line:
        raise LoaderError(_lost(path, "it closed the connection without a reply"))
    try:
        return decode(line)
    except ValueError as exc:
        raise LoaderError(_lost(path, "its reply is not valid JSON")) from exc


def _lost(path: str, why: str) -> str:
    return (
        f"the fw-load run daemon at {path} did not answer ({why}); the policy is the old or "
        "the new one, `fw-load status` says which"
    )
