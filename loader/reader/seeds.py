"""Seed data as the loader holds it: a view of one seed section, in records or as an image."""

from __future__ import annotations

import functools
from dataclasses import dataclass

from fwc.artifact.layout import IMAGE, RECORDS, image_records, image_stride

# seed records: a view into the artifact's bytes, or a copy the loader made of them
Buffer = bytes | bytearray | memoryview


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
        return memoryview(image_records(self.raw, self.value_size))

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
