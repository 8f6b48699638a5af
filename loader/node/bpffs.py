"""Checks that the pin root lives on a mounted bpffs, with a message saying how to fix it."""

from __future__ import annotations

import ctypes
import ctypes.util
import os
from pathlib import Path

from fwc.loader.errors import LoaderError

BPF_FS_MAGIC = 0xCAFE4A11
# struct statfs begins with f_type (__fsword_t, a long); 120 bytes on 64-bit Linux
_STATFS_SIZE = 120
_libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)


def fs_magic(path: Path) -> int | None:
    """The filesystem type (statfs f_type) of `path`, None when it cannot be read."""
    buf = ctypes.create_string_buffer(_STATFS_SIZE)
    if _libc.statfs(os.fsencode(path), buf) != 0:
        return None
    return int(ctypes.c_long.from_buffer(buf).value) & 0xFFFFFFFF


def on_bpffs(path: Path) -> bool:
    """Whether `path` exists on a bpffs (a pin root that was unmounted is on another fs)."""
    return fs_magic(path) == BPF_FS_MAGIC


def _mounts() -> list[tuple[str, str]]:
    """(mount point, filesystem type) for every mount this process sees."""
    try:
        text = Path("/proc/self/mounts").read_text()
    except OSError:
        return []
    result: list[tuple[str, str]] = []
    for line in text.splitlines():
        fields = line.split()
        if len(fields) >= 3:
            result.append((fields[1].replace("\\040", " "), fields[2]))
    return result


def bpffs_mount_of(path: Path) -> Path | None:
    """The bpffs mount point that holds `path`, or None when `path` is not on bpffs."""
    best: Path | None = None
    best_is_bpf = False
    absolute = Path(os.path.abspath(path))
    for point, fstype in _mounts():
        mount = Path(point)
        if (absolute == mount or mount in absolute.parents) and (
            best is None or len(mount.parts) >= len(best.parts)
        ):
            best, best_is_bpf = mount, fstype == "bpf"
    return best if best_is_bpf else None


def require_bpffs(root: Path) -> None:
    """Raise a clear error unless `root` is on a mounted bpffs."""
    if bpffs_mount_of(root) is None:
        raise LoaderError(
            f"{root} is not on a BPF filesystem; mount one first: "
            "mount -t bpf bpf /sys/fs/bpf (or pass --pin-root on a bpffs)"
        )
