"""The sorted member records of an address set (artifact/sets.py): which prefixes a removal
may take away exactly, and the records after a change."""

from __future__ import annotations

import bisect
import mmap
import struct
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from operator import itemgetter

from fwc.artifact import sets as live_sets
from fwc.compiler.policy.ir import AddressRange

_STEP = live_sets.MEMBER.size
_KIND = live_sets.KEY  # offset of the kind byte; the key is the bytes before it
_KEY_ONLY = struct.Struct(f"{_KIND}s{_STEP - _KIND}x")


def prefix_key(family: int, network: int, prefix_len: int) -> bytes:
    """The record's first KEY bytes for a prefix."""
    return bytes([family]) + network.to_bytes(16, "big") + bytes([prefix_len])


class _Keys:
    """Each record's key and kind (records sort by these bytes), searched in two steps: the
    first key of every BLOCK records in a list, then the keys of one block. A bisect over the
    records themselves would cost a Python call per probe."""

    BLOCK = 16

    def __init__(self, data: bytes | mmap.mmap, count: int) -> None:
        self._data, self._count = data, count
        width, step = _KIND + 1, _STEP * self.BLOCK
        self._firsts = [data[at : at + width] for at in range(0, count * _STEP, step)]

    def __len__(self) -> int:
        return self._count

    def __getitem__(self, index: int) -> bytes:
        at = index * _STEP
        return self._data[at : at + _KIND + 1]

    def _block(self, block: int) -> tuple[int, list[bytes]]:
        first = block * self.BLOCK
        data, width = self._data, _KIND + 1
        end = min(first + self.BLOCK, self._count) * _STEP
        return first, [data[at : at + width] for at in range(first * _STEP, end, _STEP)]

    def left(self, key: bytes) -> int:
        """The first index whose key is not below `key` (bisect_left)."""
        block = bisect.bisect_left(self._firsts, key)
        if block == 0:
            return 0
        first, keys = self._block(block - 1)
        return first + bisect.bisect_left(keys, key)

    def right(self, key: bytes) -> int:
        """The first index whose key is above `key` (bisect_right)."""
        block = bisect.bisect_right(self._firsts, key)
        if block == 0:
            return 0
        first, keys = self._block(block - 1)
        return first + bisect.bisect_right(keys, key)


def count(data: bytes | mmap.mmap | memoryview) -> int:
    """Records in a member map's memory: they come first, zeros (family 0) after."""
    view = memoryview(data)
    total = len(view) // _STEP
    return bisect.bisect_left(range(total), True, key=lambda i: view[i * _STEP] == 0)


@dataclass(frozen=True)
class Change:
    """The records a change inserts (sorted) and the indexes it removes."""

    insert: tuple[bytes, ...]
    delete: tuple[int, ...]
    added: tuple[AddressRange, ...]  # members that were not members before
    removed: tuple[AddressRange, ...]
    missing: tuple[AddressRange, ...] = ()  # removals that are no members


class Members:
    """A set's records, read from its live member map."""

    def __init__(self, data: bytes | mmap.mmap) -> None:
        """`data`: the records, then zeros (a member map's memory, or bytes)."""
        self.data = data
        self.count = count(data)
        self._keys = _Keys(data, self.count)

    def members(self) -> int:
        """Records of kind member."""
        kinds = bytes(memoryview(self.data)[_KIND : self.count * _STEP : _STEP])
        return kinds.count(live_sets.MEMBER_KIND)

    def key(self, at: int) -> bytes:
        """Record `at`'s prefix key."""
        return self._keys[at][:_KIND]

    def find(self, family: int, network: int, prefix_len: int, kind: int) -> int | None:
        key = prefix_key(family, network, prefix_len) + bytes([kind])
        at = self._keys.left(key)
        return at if at < self.count and self._keys[at] == key else None

    def overlapped(self, prefix: AddressRange, at: int, shorter: Shorter | None = None) -> bool:
        """Whether any record but the member `prefix` (record `at`) holds, is held by, or
        equals it; `shorter`, when given, answers for the records that hold it."""
        family, width = prefix.family.value, prefix.family.width
        if at + 1 < self.count:
            key = self._keys[at + 1]  # the same prefix of another kind, or what follows
            if key[:_KIND] == self._keys[at][:_KIND]:
                return True
            if key[0] == family and int.from_bytes(key[1:17], "big") <= prefix.last:
                return True  # a descendant sorts right after the prefix
        return self._ancestor(family, width, prefix.network, prefix.prefix_len, at, shorter)

    def _ancestor(
        self,
        family: int,
        width: int,
        network: int,
        prefix_len: int,
        at: int,
        shorter: Shorter | None = None,
    ) -> bool:
        """Whether a record before index `at` holds the prefix (is shorter and contains it).

        The record just before a prefix either holds it or lies beside it; any record that
        holds the prefix holds that neighbour too, so it holds their common prefix: search
        again from there, each time with a shorter prefix.
        """
        while at > 0:
            key = self._keys[at - 1]
            if key[0] != family:
                return False
            other, other_len = int.from_bytes(key[1:17], "big"), key[17]
            common = min(other_len, prefix_len, width - (other ^ network).bit_length())
            if common == other_len:
                return True
            network = network >> (width - common) << (width - common) if common else 0
            prefix_len = common
            if shorter is not None:  # the holder is this prefix or shorter: a few lookups
                return shorter.holds(family, width, network, prefix_len + 1)
            key = prefix_key(family, network, prefix_len)
            at = self._keys.left(key + b"\0")
            if at < self.count and self._keys[at][: len(key)] == key:
                return True
        return False

    def change(
        self,
        adds: Sequence[AddressRange],
        removes: Sequence[AddressRange],
        shorter: Shorter | None = None,
    ) -> Change:
        """The records after adding `adds` and removing `removes`; adding a member is a no-op,
        and a removal that is no member is listed in `missing`. `shorter`, when given, skips
        the search for an added prefix no record has."""
        insert: dict[bytes, AddressRange] = {}
        for prefix in adds:
            family = prefix.family.value
            record = live_sets.member(family, prefix.network, prefix.prefix_len)
            fresh = shorter is not None and record[:_KIND] not in shorter.keys
            if fresh or self.find(family, prefix.network, prefix.prefix_len, 0) is None:
                insert[record] = prefix
        delete: dict[int, AddressRange] = {}
        missing = []
        for prefix in removes:
            at = self.find(prefix.family.value, prefix.network, prefix.prefix_len, 0)
            if at is None:
                missing.append(prefix)
            else:
                delete[at] = prefix
        ordered = sorted(insert)
        return Change(
            tuple(ordered),
            tuple(sorted(delete)),
            tuple(insert[r] for r in ordered),
            tuple(delete[at] for at in sorted(delete)),
            tuple(missing),
        )

    def apply(self, change: Change) -> tuple[bytes, int]:
        """The records with `change` made, in order, and the first record that moved."""
        view = memoryview(self.data)
        parts: list[bytes | memoryview] = []
        events = sorted(
            [(self._keys.left(r[: _KIND + 1]), 0, r) for r in change.insert]
            + [(at, 1, b"") for at in change.delete]
        )
        done = 0
        for at, kind, record in events:
            parts.append(view[done * _STEP : at * _STEP])
            done = at
            if kind:
                done = at + 1
            else:
                parts.append(record)
        parts.append(view[done * _STEP : self.count * _STEP])
        return b"".join(parts), events[0][0] if events else self.count


class Shorter:
    """Every record's prefix (its first KEY bytes) in a hash set, and per family the prefix
    lengths present: whether a record holds a prefix is then one set lookup per shorter length
    present. Building it walks every record (about half a second for a million), so a resident
    daemon builds it once and keeps it up to date."""

    def __init__(self, data: bytes, count: int) -> None:
        view = memoryview(data)[: count * _STEP]
        self.keys = set(map(itemgetter(0), _KEY_ONLY.iter_unpack(view)))
        families, lengths = bytes(view[0::_STEP]), bytes(view[_KIND - 1 :: _STEP])
        self.lengths: Counter[tuple[int, int]] = Counter()
        start = 0
        for family, width in ((4, 32), (6, 128)):  # records sort by family: 4 before 6
            end = start + families.count(family)
            part = lengths[start:end]
            for length in range(width + 1):
                if found := part.count(length):
                    self.lengths[family, length] = found
            start = end
        self._shorter: dict[int, tuple[int, ...]] = {}

    def holds(self, family: int, width: int, network: int, prefix_len: int) -> bool:
        if family not in self._shorter:
            self._shorter[family] = tuple(
                sorted(n for (f, n), records in self.lengths.items() if f == family and records)
            )
        for length in self._shorter[family]:
            if length >= prefix_len:
                break
            host = width - length
            if prefix_key(family, network >> host << host, length) in self.keys:
                return True
        return False

    def change(self, old: Members, change: Change) -> None:
        """Follow `change` made to `old`'s records (a removed prefix is never held twice: a
        removal that another record equals is refused)."""
        for record in change.insert:
            self.keys.add(record[:_KIND])
            self.lengths[record[0], record[_KIND - 1]] += 1
        for at in change.delete:
            key = old.key(at)
            self.keys.discard(key)
            self.lengths[key[0], key[_KIND - 1]] -= 1
        self._shorter.clear()
