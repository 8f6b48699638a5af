"""Seed values that hold counter slots, moved to the slots the live counters keep."""

from __future__ import annotations

import struct
from array import array

from fwc.artifact.layout import (
    CFG_SLOTS,
    CFG_TABLE,
    RULE_SLOTS,
    RULE_TABLE,
    RULE_VALUE,
    generation_base,
)
from fwc.loader.reader.seeds import Buffer, SeedSpec

# the u32 words of one fwc_rule record: its key, then the value
_RULE_WORDS = (4 + RULE_VALUE.size) // 4


def remap_records(seed: SeedSpec, mapping: dict[int, int] | None) -> Buffer:
    """The seed's records with counter slots moved to the live counters' slots."""
    base = generation_base(seed.map)
    if mapping is None or base not in (RULE_TABLE, CFG_TABLE):
        return seed.records
    if base == RULE_TABLE:
        out = bytearray(seed.records)
        # the slot is the last u32 of each (key, action, slot) record: one column, remapped
        words = memoryview(out).cast("I")
        column = slice(_RULE_WORDS - 1, None, _RULE_WORDS)
        words[column] = memoryview(array("I", map(mapping.__getitem__, words[column])))
        return out
    fields = list(struct.unpack(f"<{len(seed.records) // 4}I", seed.records))
    # the record is the u32 key 0, then the cfg value
    value = fields[1:]
    value[CFG_SLOTS] = [mapping[s] for s in value[CFG_SLOTS]]
    return struct.pack(f"<{len(fields)}I", fields[0], *value)


def remap_image(image: memoryview, map_name: str, mapping: dict[int, int] | None) -> bytes:
    """An image seed with counter slots moved to the live counters' slots."""
    base = generation_base(map_name)
    if mapping is None or base not in (RULE_TABLE, CFG_TABLE):
        return bytes(image)
    out = bytearray(image)
    words = memoryview(out).cast("I")
    column = RULE_SLOTS if base == RULE_TABLE else CFG_SLOTS
    words[column] = memoryview(array("I", map(mapping.__getitem__, words[column])))
    return bytes(out)
