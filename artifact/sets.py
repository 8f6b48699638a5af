"""Live set changes (docs/tables.md, "Live set changes"): the member records of an address set
that the compiler seeds and fw-load edits, kept sorted in one array map per generation."""

from __future__ import annotations

import struct

# family (4 or 6), network (16 bytes, big-endian), prefix length, kind, padding: the first
# KEY bytes order records as (family, network, prefix length), so a prefix's ancestors come
# before it and its descendants right after it
MEMBER = struct.Struct(">B16sBB5x")
KEY = 18
MEMBER_KIND = 0  # a member of the set
OTHER_KIND = 1  # an address a rule lists beside the set: never removed, but it overlaps
TABLE_OF_FIELD = {"src": "s", "dst": "d"}


def member(family: int, network: int, prefix_len: int, kind: int = MEMBER_KIND) -> bytes:
    """One record (the array's value)."""
    return MEMBER.pack(family, network.to_bytes(16, "big"), prefix_len, kind)


def unpack(record: bytes) -> tuple[int, int, int, int]:
    """family, network, prefix length, kind."""
    family, network, prefix_len, kind = MEMBER.unpack(record)
    return family, int.from_bytes(network, "big"), prefix_len, kind


def members_map(index: int) -> str:
    """The generation base name of the editable set `index`'s member map ("fwc_set0_")."""
    return f"fwc_set{index}_"
