"""Seed data as the loader holds it: a view of one seed section, in records or as an image."""

from __future__ import annotations

import functools
from dataclasses import dataclass

from fwc.artifact.layout import IMAGE, RECORDS, image_stride

# seed records: a view into the artifact's bytes, or a copy the loader made of them
Buffer = bytes | bytearray | memoryview


@functools.cache
def _iota(count: int) -> bytes:
    out = bytearray(count * 4)
    for lane in range(4):
        unit = 1 << (8 * lane)
        period = b"".join(bytes([j]) * min(unit, count) for j in range(min(256, -(-count // unit))))
        out[lane::4] = (period * -(-count // len(period)))[:count]
    return bytes(out)


def iota(count: int) -> memoryview:
    """Little-endian u32 keys 0 .. count-1 (the keys an image seed implies), built one byte
    lane at a time (C speed, no ints)."""
    # callers want prefixes of one longest run: round up so they share it
    size = 1 << max(count - 1, 0).bit_length()
    return memoryview(_iota(size))[: count * 4]


@dataclass(frozen=True)
class SeedSpec:
    """What fw-load writes into `map` before attaching: records (key bytes then value bytes),
    or for an array with keys 0 .. count-1 its image (each value padded to 8 bytes)."""

    map: str
    section: str
    key_size: int
    value_size: int
    raw: memoryview  # the section's bytes: read-only, into the artifact's bytes
    layout: str = RECORDS  # or IMAGE

    @property
    def image(self) -> memoryview | None:
        """The array's memory from element 0 on (the mmap layout); None for records."""
        return self.raw if self.layout == IMAGE else None

    @functools.cached_property
    def records(self) -> memoryview:
        """The seed as (key, value) records, whatever its layout."""
        if self.layout != IMAGE:
            return self.raw
        stride, step = image_stride(self.value_size), self.key_size + self.value_size
        out = bytearray(self.count * step)
        keys = iota(self.count)
        for b in range(self.key_size):
            out[b::step] = keys[b :: self.key_size]
        for b in range(self.value_size):
            out[self.key_size + b :: step] = self.raw[b::stride]
        return memoryview(bytes(out))

    @property
    def count(self) -> int:
        if self.layout == IMAGE:
            return len(self.raw) // image_stride(self.value_size)
        return len(self.raw) // (self.key_size + self.value_size)

    def items(self) -> list[tuple[bytes, bytes]]:
        step = self.key_size + self.value_size
        raw = self.records
        return [
            (bytes(raw[i : i + self.key_size]), bytes(raw[i + self.key_size : i + step]))
            for i in range(0, len(raw), step)
        ]
