"""The manifest kept in the kernel: a one-entry ARRAY map `fwc_meta`, pinned next to the program.

bpffs holds only BPF objects, so this is how `stats` and `status` recover slot names and the
policy hash with no state file.
"""

from __future__ import annotations

import os
import struct

from fwc.artifact import codec
from fwc.artifact.manifest import Manifest
from fwc.loader.errors import LoaderError
from fwc.loader.kernel import libbpf

META_MAP_NAME = "fwc_meta"
_PAGE = 4096
_KEY = struct.pack("<I", 0)


def create_meta_map(manifest: bytes) -> int:
    """A new frozen map holding `manifest` (encoded, zero-padded); the caller owns the fd."""
    size = (len(manifest) // _PAGE + 1) * _PAGE  # at least one trailing NUL ends the JSON
    fd = libbpf.map_create(libbpf.BPF_MAP_TYPE_ARRAY, META_MAP_NAME, len(_KEY), size, 1)
    try:
        libbpf.map_update(fd, _KEY, manifest.ljust(size, b"\0"))
        # frozen: no user-space writer can change what stats and status will read back
        libbpf.map_freeze(fd)
    except BaseException:
        os.close(fd)
        raise
    return fd


def read_meta_fd(fd: int) -> Manifest:
    """The manifest stored in an open `fwc_meta` map (fwc.artifact.codec's encoding)."""
    info = libbpf.map_info(fd)
    if info.name != META_MAP_NAME or info.key_size != len(_KEY) or info.max_entries != 1:
        raise LoaderError(f"map {info.name!r} (id {info.id}) is not an fwc manifest map")
    raw = libbpf.map_lookup(fd, _KEY, info.value_size) or b""
    try:
        # a policy pinned by an older fw-load (format 1) keeps working: status, stats, counters
        return codec.decode(raw.split(b"\0", 1)[0], upgrade=True)
    except codec.ManifestError as exc:
        raise LoaderError(
            f"map {META_MAP_NAME!r} (id {info.id}) holds no valid manifest: {exc}"
        ) from exc


def read_meta_map(pinned: str | os.PathLike[str]) -> Manifest:
    """The manifest stored in the `fwc_meta` map pinned at `pinned`."""
    fd = libbpf.obj_get(pinned)
    try:
        return read_meta_fd(fd)
    finally:
        os.close(fd)
