"""A byte-for-byte copy of what one generation's hash map holds, pinned beside it.

A live update diffs the new seed against this copy in memory instead of reading the hash
back from the kernel; the table digests say whether the copy can be trusted.
"""

from __future__ import annotations

import mmap
import os
import struct
from pathlib import Path

from fwc.loader.errors import LoaderError
from fwc.loader.kernel import array_mmap, libbpf
from fwc.loader.reader.seeds import Buffer

MAP_NAME = "fwc_shadow"
_COUNT = struct.Struct("<Q")
_HEADER = 4096  # element 0 region: the record count, then the records from this offset


def pin_name(target: str) -> str:
    """The pin of `target`'s shadow under maps/ (bpffs names take no dot)."""
    return f"{target}_shadow"


def _words(record_size: int, entries: int) -> int:
    """8-byte array elements: their stride equals their size, so the mapping is contiguous."""
    return -(-(_HEADER + record_size * entries) // 8)


class Shadow:
    """The shadow of one hash map; `records()` and `store()` go through one shared mapping."""

    def __init__(self, pin: Path, record_size: int, entries: int) -> None:
        self.words = _words(record_size, entries)
        self.size = self.words * 8
        fd = self._open(pin)
        if fd is None:
            fd = libbpf.map_create(
                libbpf.BPF_MAP_TYPE_ARRAY,
                MAP_NAME,
                4,
                8,
                self.words,
                flags=array_mmap.BPF_F_MMAPABLE,
            )
            try:
                if pin.exists():
                    pin.unlink()
                libbpf.obj_pin(fd, pin)
            except (LoaderError, OSError):
                os.close(fd)
                raise
        try:
            self._map = mmap.mmap(fd, self.size, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
        finally:
            os.close(fd)
        self.record_size = record_size

    def _open(self, pin: Path) -> int | None:
        if not pin.exists():
            return None
        fd = libbpf.obj_get(pin)
        info = libbpf.map_info(fd)
        if info.name == MAP_NAME and info.max_entries == self.words and array_mmap.mmapable(info):
            return fd
        os.close(fd)
        return None

    def records(self) -> bytes:
        """The records last stored (empty when none)."""
        (count,) = _COUNT.unpack_from(self._map)
        end = _HEADER + count * self.record_size
        return self._map[_HEADER:end] if end <= self.size else b""

    def store(self, records: Buffer) -> None:
        if _HEADER + len(records) > self.size:
            raise LoaderError(f"{len(records)} bytes of records do not fit the shadow map")
        self._map[_HEADER : _HEADER + len(records)] = records
        _COUNT.pack_into(self._map, 0, len(records) // self.record_size)

    def close(self) -> None:
        self._map.close()
