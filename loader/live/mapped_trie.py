"""One generation's address trie (artifact/trie.py), painted in place through shared mappings
of its two mmapable arrays: the slots and the skip records."""

from __future__ import annotations

import mmap
from array import array
from types import TracebackType

from fwc.artifact import trie as trie_layout
from fwc.artifact.layout import image_stride

_SLOT_STRIDE = image_stride(4)
_SLOT_WORDS = _SLOT_STRIDE // 4
_SKIP = trie_layout.SKIP_RECORD


class MappedTrie:
    """A trie.TrieStore over a pinned generation's maps; new chunks and skip records go above
    the `slots` and `skips` in use, up to the maps' sizes (trie.TrieFull beyond)."""

    def __init__(
        self,
        table: str,
        width: int,
        trie: tuple[mmap.mmap, int],
        skip: tuple[mmap.mmap, int],
        slots: int,
        skips: int,
    ) -> None:
        """`trie` and `skip`: the two arrays' mappings (views.Views) and sizes."""
        self.table = table
        self.width = width
        self.slots, self.skips = slots, skips
        (self._trie, self._slot_capacity), (self._skip, self._skip_capacity) = trie, skip
        self._words = memoryview(self._trie).cast("I")
        # what was written, as [start, end) element ranges: the next change copies only these
        self.slots_written: list[tuple[int, int]] = []
        self.skips_written: list[tuple[int, int]] = []

    def slot(self, index: int) -> int:
        return int(self._words[index * _SLOT_WORDS])

    def set_slot(self, index: int, value: int) -> None:
        self._words[index * _SLOT_WORDS] = value
        self.slots_written.append((index, index + 1))

    def fill(self, start: int, span: int, value: int) -> None:
        # one strided store: slots sit a stride of 8 bytes apart
        first = start * _SLOT_WORDS
        self._words[first : first + span * _SLOT_WORDS : _SLOT_WORDS] = array("I", [value]) * span
        self.slots_written.append((start, start + span))

    def alloc(self, slots: int, value: int) -> int:
        start = self.slots
        if start + slots > self._slot_capacity:
            raise trie_layout.TrieFull(f"trie {self.table} has no room for another chunk")
        self.slots += slots
        self.fill(start, slots, value)
        return start

    def skip(self, record: trie_layout.SkipRecord) -> int:
        if self.skips >= self._skip_capacity:
            raise trie_layout.TrieFull(f"trie {self.table} has no room for another skip record")
        self.skips += 1
        self.write_skip(self.skips - 1, record)
        return self.skips - 1

    def read_skip(self, index: int) -> trie_layout.SkipRecord:
        mask_hi, mask_lo, hi, lo, hit, miss = _SKIP.unpack_from(self._skip, index * _SKIP.size)
        return mask_hi, mask_lo, hi, lo, hit, miss

    def write_skip(self, index: int, record: trie_layout.SkipRecord) -> None:
        _SKIP.pack_into(self._skip, index * _SKIP.size, *record)
        self.skips_written.append((index, index + 1))

    def written(self) -> tuple[tuple[int, ...], tuple[int, ...]]:
        """Byte ranges written into the slot array and the skip array (start, end, ...)."""
        return merged(self.slots_written, _SLOT_STRIDE), merged(self.skips_written, _SKIP.size)

    def close(self) -> None:
        """Release the view of the slots (the mappings stay with their owner)."""
        self._words.release()

    def __enter__(self) -> MappedTrie:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()


def merged(ranges: list[tuple[int, int]], stride: int) -> tuple[int, ...]:
    """Element ranges as sorted, merged byte ranges, flat: start, end, start, end..."""
    out: list[int] = []
    for start, end in sorted(ranges):
        if out and start * stride <= out[-1]:
            out[-1] = max(out[-1], end * stride)
        else:
            out += [start * stride, end * stride]
    return tuple(out)
