"""The tables strategy's address trie (docs/tables.md): its slot encoding, and the one writer
that paints prefixes into it, which the compiler builds a trie with and fw-load changes one with.

A family is named by its address width (32 or 128). The trie is one array of u32 slots: 65,536
root slots for the top 16 bits, then chunks of 2^stride slots. A slot holds a class index,
CHUNK | p (the chunk at DIR_ROOT + p << unit), or CHUNK | SKIP | k (skip record k: one masked
compare gives its prefix's class or the slot's own).
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Sequence
from typing import Protocol

DIR_ROOT_BITS = 16
DIR_ROOT = 1 << DIR_ROOT_BITS
CHUNK = 1 << 31
SKIP = 1 << 30
U64_MASK = (1 << 64) - 1
SKIP_RECORD = struct.Struct("<4Q2I")  # mask hi, lo; prefix hi, lo; class on match, else
# 8-bit strides down to this bit, 4-bit strides below it; chunks are counted in 2^unit slots
_WIDE_UNTIL = {32: 32, 128: 48}
_UNIT = {32: 8, 128: 4}

# A prefix to paint: network, prefix length, the class index its addresses get.
Prefix = tuple[int, int, int]
SkipRecord = tuple[int, int, int, int, int, int]


class TrieFull(Exception):
    """The trie array or its skip records have no room left."""


class TrieStore(Protocol):
    """A trie's slots and skip records, wherever they are kept (an array being built, or a
    map's memory)."""

    width: int

    def slot(self, index: int) -> int: ...

    def set_slot(self, index: int, value: int) -> None: ...

    def fill(self, start: int, span: int, value: int) -> None: ...

    def alloc(self, slots: int, value: int) -> int:
        """The first index of `slots` new slots, each set to `value`; TrieFull when none."""
        ...

    def skip(self, record: SkipRecord) -> int:
        """The index of a new skip record; TrieFull when none."""
        ...

    def read_skip(self, index: int) -> SkipRecord: ...

    def write_skip(self, index: int, record: SkipRecord) -> None: ...


def unit(width: int) -> int:
    """log2 of the slots one chunk number counts."""
    return _UNIT[width]


def stride_at(width: int, consumed: int) -> int:
    """Bits of the address the chunk below `consumed` bits indexes."""
    return 8 if consumed < _WIDE_UNTIL[width] else 4


def chunk_start(width: int, value: int) -> int:
    """The first slot of the chunk a CHUNK slot value points to."""
    return DIR_ROOT + ((value & ~CHUNK) << _UNIT[width])


def build(trie: TrieStore, entries: Sequence[Prefix], consumed: int, inherited: int) -> int:
    """The slot value for the subtree below `consumed` bits holding `entries` (short first),
    whose other addresses keep class `inherited`.

    Painting prefixes from short to long makes every slot hold its longest match. A subtree of
    one prefix is one skip record instead of a chain of chunks.
    """
    width, stride = trie.width, stride_at(trie.width, consumed)
    if len(entries) == 1:
        network, plen, cid = entries[0]
        mask = ((1 << plen) - 1) << (width - plen)
        record = (mask >> 64, mask & U64_MASK, network >> 64, network & U64_MASK, cid, inherited)
        return CHUNK | SKIP | trie.skip(record)
    start = trie.alloc(1 << stride, inherited)
    after = consumed + stride
    below: dict[int, list[Prefix]] = {}
    for entry in entries:
        network, plen, cid = entry
        nibble = network >> (width - after) & ((1 << stride) - 1)
        if plen <= after:
            trie.fill(start + nibble, 1 << (after - plen), cid)
        else:
            below.setdefault(nibble, []).append(entry)
    for nibble in sorted(below):
        slot = start + nibble
        trie.set_slot(slot, build(trie, below[nibble], after, trie.slot(slot)))
    return CHUNK | (start - DIR_ROOT) >> _UNIT[width]


def paint(trie: TrieStore, network: int, plen: int, change: Callable[[int], int]) -> None:
    """Give every address of the prefix the class `change(its class)`, in place.

    Chunks below the prefix are walked whole; a plain slot or a skip record that the prefix
    cuts is replaced by a subtree that `build` writes, so the trie stays one a compile of the
    same classes could have written (though not always the smallest one).
    """
    root = network >> (trie.width - DIR_ROOT_BITS)
    if plen <= DIR_ROOT_BITS:
        for index in range(root, root + (1 << (DIR_ROOT_BITS - plen))):
            _change_all(trie, index, DIR_ROOT_BITS, change)
    else:
        _paint_below(trie, root, DIR_ROOT_BITS, (network, plen), change)


def _change_all(trie: TrieStore, index: int, consumed: int, change: Callable[[int], int]) -> None:
    value = trie.slot(index)
    if not value & CHUNK:
        trie.set_slot(index, change(value))
    elif value & SKIP:
        k = value & ~(CHUNK | SKIP)
        *compare, hit, miss = trie.read_skip(k)
        trie.write_skip(k, (*compare, change(hit), change(miss)))  # type: ignore[arg-type]
    else:
        start, stride = chunk_start(trie.width, value), stride_at(trie.width, consumed)
        for slot in range(start, start + (1 << stride)):
            _change_all(trie, slot, consumed + stride, change)


def _paint_below(
    trie: TrieStore,
    index: int,
    consumed: int,
    prefix: tuple[int, int],
    change: Callable[[int], int],
) -> None:
    """Paint `prefix`, longer than `consumed` bits, under slot `index`, whose region holds it."""
    width = trie.width
    network, plen = prefix
    value = trie.slot(index)
    if not value & CHUNK:
        trie.set_slot(index, build(trie, [(network, plen, change(value))], consumed, value))
        return
    if value & SKIP:
        k = value & ~(CHUNK | SKIP)
        mask_hi, mask_lo, hi, lo, hit, miss = trie.read_skip(k)
        mask, other = mask_hi << 64 | mask_lo, hi << 64 | lo
        other_len = mask.bit_count()
        if (other, other_len) == (network, plen):
            trie.write_skip(k, (mask_hi, mask_lo, hi, lo, change(hit), miss))
            return
        mine = ((1 << plen) - 1) << (width - plen)
        if other_len < plen and network & mask == other:
            entries = [(other, other_len, hit), (network, plen, change(hit))]
        elif plen < other_len and other & mine == network:
            entries = [(network, plen, change(miss)), (other, other_len, change(hit))]
        else:
            entries = sorted(
                [(other, other_len, hit), (network, plen, change(miss))],
                key=lambda e: (e[1], e[0]),
            )
        trie.set_slot(index, build(trie, entries, consumed, miss))
        return
    stride = stride_at(width, consumed)
    after = consumed + stride
    start = chunk_start(width, value) + (network >> (width - after) & ((1 << stride) - 1))
    if plen <= after:
        for slot in range(start, start + (1 << (after - plen))):
            _change_all(trie, slot, after, change)
    else:
        _paint_below(trie, start, after, prefix, change)


def lookup(trie: TrieStore, address: int) -> int:
    """The class index of an address: the walk the XDP program does."""
    width = trie.width
    value = trie.slot(address >> (width - DIR_ROOT_BITS))
    consumed = DIR_ROOT_BITS
    while value & CHUNK:
        if value & SKIP:
            mask_hi, mask_lo, hi, lo, hit, miss = trie.read_skip(value & ~(CHUNK | SKIP))
            mask = mask_hi << 64 | mask_lo
            return hit if address & mask == (hi << 64 | lo) else miss
        stride = stride_at(width, consumed)
        consumed += stride
        nibble = address >> (width - consumed) & ((1 << stride) - 1)
        value = trie.slot(chunk_start(width, value) + nibble)
    return value
