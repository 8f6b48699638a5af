"""The change that turns a hash map holding some records into one holding others."""

from __future__ import annotations

from array import array
from bisect import bisect_left
from collections.abc import Sequence
from typing import Any

from fwc.loader.kernel.records import split_records
from fwc.loader.reader.seeds import Buffer

_WORD = {1: "B", 2: "H", 4: "I", 8: "Q"}
_DIFF_BLOCK = 64  # new records per interval of the key space compared at once


def hash_changes(old: Buffer, new: Buffer, key_size: int, value_size: int) -> tuple[bytes, bytes]:
    """What turns a hash holding the `old` records into one holding the `new`: (packed keys
    to delete, records to write).

    Only the key intervals where old and new differ are touched, and each of them is replaced
    whole: its old keys deleted, its new records written. Finding the records that really
    changed inside an interval costs more in Python than rewriting the interval costs in the
    kernel (about a microsecond per record either way, and an edit's intervals are mostly
    changed: its groups' combos are renumbered).
    """
    old, new = _changed_intervals(old, new, key_size, value_size)
    return pack_keys(_key_column(old, key_size, value_size), key_size), bytes(new)


def pack_keys(keys: Sequence[Any], size: int) -> bytes:
    """Keys as the packed array a batch call takes."""
    return array(_WORD[size], keys).tobytes() if size in _WORD else b"".join(keys)


def _sorted_keys(records: Buffer, key_size: int, value_size: int) -> Sequence[int] | None:
    """The records' keys as integers when they are machine words in ascending order."""
    if key_size not in _WORD:
        return None
    column = _key_column(records, key_size, value_size)
    as_list = list(column)
    return column if as_list == sorted(as_list) else None


def _changed_intervals(
    old: Buffer, new: Buffer, key_size: int, value_size: int
) -> tuple[Buffer, Buffer]:
    """The old and new records of the key intervals where they differ (both whole when the
    keys are not sorted). Intervals start at every _DIFF_BLOCK-th new key, so they split
    both sides at the same keys and a diff of the parts is the diff of the wholes."""
    old_keys = _sorted_keys(old, key_size, value_size)
    new_keys = _sorted_keys(new, key_size, value_size)
    if old_keys is None or new_keys is None:
        return old, new
    step = key_size + value_size
    old_bytes, new_bytes = bytes(old), bytes(new)
    cuts = [
        (bisect_left(old_keys, new_keys[n]), n)
        for n in range(_DIFF_BLOCK, len(new_keys), _DIFF_BLOCK)
    ]
    cuts.append((len(old_keys), len(new_keys)))
    old_parts: list[bytes] = []
    new_parts: list[bytes] = []
    start_old = start_new = 0
    for end_old, end_new in cuts:
        before = old_bytes[start_old * step : end_old * step]
        after = new_bytes[start_new * step : end_new * step]
        if before != after:
            old_parts.append(before)
            new_parts.append(after)
        start_old, start_new = end_old, end_new
    return b"".join(old_parts), b"".join(new_parts)


def _column(buf: Buffer, size: int) -> Sequence[Any]:
    """Fixed-size items of `buf`: machine words when they fit one (a C-speed split), else bytes."""
    if size in _WORD:
        column = array(_WORD[size])
        column.frombytes(buf)
        return column
    return [bytes(buf[i : i + size]) for i in range(0, len(buf), size)]


def _key_column(records: Buffer, key_size: int, value_size: int) -> Sequence[Any]:
    keys, _ = split_records(records, key_size, value_size)
    return _column(keys, key_size)
