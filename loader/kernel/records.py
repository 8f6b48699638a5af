"""Packed (key, value) records split into the keys and values arrays batch calls take, and back."""

from __future__ import annotations

from typing import Literal

from fwc.loader.reader.seeds import Buffer


def _word(*sizes: int) -> tuple[int, Literal["I", "H", "B"]]:
    """The widest machine word dividing every size: the unit of C-speed strided copies."""
    if all(size % 4 == 0 for size in sizes):
        return 4, "I"
    if all(size % 2 == 0 for size in sizes):
        return 2, "H"
    return 1, "B"


def split_records(records: Buffer, key_size: int, value_size: int) -> tuple[bytes, bytes]:
    """Packed (key, value) records into the keys array and the values array batch calls take."""
    width, code = _word(key_size, value_size)
    step, kw, vw = (key_size + value_size) // width, key_size // width, value_size // width
    count = len(records) // (key_size + value_size)
    keys, values = bytearray(count * key_size), bytearray(count * value_size)
    src = memoryview(records).cast("B").cast(code)
    key_view, value_view = memoryview(keys).cast(code), memoryview(values).cast(code)
    # one strided copy per word lane runs at C speed; a loop over records would not
    for lane in range(kw):
        key_view[lane::kw] = src[lane::step]
    for lane in range(vw):
        value_view[lane::vw] = src[kw + lane :: step]
    return bytes(keys), bytes(values)


def join_records(keys: Buffer, values: Buffer, key_size: int, value_size: int) -> bytes:
    """The inverse of `split_records`."""
    step = key_size + value_size
    out = bytearray(len(keys) // key_size * step)
    for lane in range(key_size):
        out[lane::step] = keys[lane::key_size]
    for lane in range(value_size):
        out[key_size + lane :: step] = values[lane::value_size]
    return bytes(out)
