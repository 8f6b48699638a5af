"""Bounded reads of the files a user names: regular files only, never more than a limit.

A FIFO would block the reader forever and a device (/dev/zero) never ends, so both are
refused before any byte is read; a regular file larger than the limit is refused too.
"""

from __future__ import annotations

import os
import stat

MiB = 1 << 20
ARTIFACT_LIMIT = 512 * MiB  # a 1M-entry blocklist's artifact is about 300 MiB
POLICY_LIMIT = 32 * MiB

_KINDS = (
    (stat.S_ISDIR, "a directory"),
    (stat.S_ISFIFO, "a FIFO"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
)


class FileReadError(ValueError):
    """The file cannot be read within the bounds; the message is one line, without the path."""


def kind_of(mode: int) -> str:
    """What a file of `mode` is, in words ("a FIFO", "a regular file", ...)."""
    return next((words for test, words in _KINDS if test(mode)), "a regular file")


def read_bounded(path: str | os.PathLike[str], limit: int) -> bytes:
    """The bytes of the regular file at `path`, at most `limit` of them; FileReadError else.

    The file is opened without blocking (a FIFO's open would wait for a writer) and checked
    on its descriptor, so what is read is what was checked.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
    except OSError as exc:
        raise FileReadError(f"cannot read: {exc.strerror or exc}") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise FileReadError(f"is {kind_of(info.st_mode)}, not a regular file")
        if info.st_size > limit:
            raise FileReadError(f"is larger than {_size(limit)} ({info.st_size} bytes)")
        os.set_blocking(fd, True)
        with os.fdopen(fd, "rb", closefd=False) as f:
            data = f.read(limit + 1)
    except OSError as exc:
        raise FileReadError(f"cannot read: {exc.strerror or exc}") from None
    finally:
        os.close(fd)
    if len(data) > limit:  # it grew while being read
        raise FileReadError(f"is larger than {_size(limit)}")
    return data


def _size(limit: int) -> str:
    return f"{limit // MiB} MiB" if limit % MiB == 0 else f"{limit} bytes"
