"""Shared mappings of pinned mmapable arrays, kept by map id between live set changes.

Mapping a BPF array maps every page of it at once, and unmapping tears them all down: tens of
milliseconds for a trie of 100 MB. A resident `fw-load run` keeps the mappings of the tables
its set changes touch, so a change maps nothing; they are dropped when other maps are used
(and by the daemon after any apply), so no mapping keeps a replaced map alive for long.
"""

from __future__ import annotations

import mmap

from fwc.artifact.layout import image_stride
from fwc.loader.kernel import array_mmap, libbpf
from fwc.loader.live.errors import LiveUpdateError


class Views:
    """Writable shared mappings by map id."""

    def __init__(self) -> None:
        self._kept: dict[int, tuple[mmap.mmap, int]] = {}
        self.used: set[int] = set()

    def get(self, fd: int, what: str) -> tuple[mmap.mmap, int]:
        """The mapping of the array `fd` and its max_entries."""
        info = libbpf.map_info(fd)
        self.used.add(info.id)
        kept = self._kept.get(info.id)
        if kept is not None:
            return kept
        if not array_mmap.mmapable(info):
            raise LiveUpdateError(f"pinned map {what} is not an mmapable array")
        size = info.max_entries * image_stride(info.value_size)
        view = mmap.mmap(fd, size, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
        self._kept[info.id] = (view, info.max_entries)
        return self._kept[info.id]

    def keep_used(self) -> None:
        """Unmap what was not used since the last call."""
        for map_id in set(self._kept) - self.used:
            self._kept.pop(map_id)[0].close()
        self.used = set()

    def clear(self) -> None:
        self.used = set()
        self.keep_used()


VIEWS = Views()
