"""Write a BPF_F_MMAPABLE ARRAY map through a shared mapping: compare, then copy what differs.

A live update writes the idle generation this way: a memory compare and copy of tens of MB
takes milliseconds, where BPF_MAP_UPDATE_BATCH costs hundreds of ns per record.
"""

from __future__ import annotations

import ctypes
import mmap
from dataclasses import dataclass
from typing import Literal

from fwc.artifact.layout import image_stride, iota
from fwc.loader.kernel import libbpf
from fwc.loader.reader.seeds import Buffer

BPF_F_MMAPABLE = 1 << 10
KEY_SIZE = 4
# compare and copy granule: small enough that an edit copies little, large enough that the
# per-call overhead of ctypes stays far below the memcmp itself
_BLOCK = 1 << 16

_libc = ctypes.CDLL(None, use_errno=True)
_libc.memcmp.restype = ctypes.c_int
_libc.memcmp.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t]
_ZERO_BLOCK = ctypes.create_string_buffer(_BLOCK)


def mmapable(info: libbpf.MapInfo) -> bool:
    return info.type == libbpf.BPF_MAP_TYPE_ARRAY and bool(info.flags & BPF_F_MMAPABLE)


def _lane(size: int) -> tuple[int, Literal["I", "H", "B"]]:
    """The widest machine word that divides the value size (the key's 4 and any stride too)."""
    if size % 4 == 0:
        return 4, "I"
    if size % 2 == 0:
        return 2, "H"
    return 1, "B"


def image(records: Buffer, value_size: int, entries: int, first: int = 0) -> bytearray | None:
    """The map's memory from element `first` on as the records (u32 key, value) describe
    them; the rest of the map is to be zero.

    None unless the keys are exactly first .. first+count-1 in order and fit `entries`:
    such a seed has to be written record by record.
    """
    step = KEY_SIZE + value_size
    count = len(records) // step
    if first + count > entries or count * step != len(records):
        return None
    width, code = _lane(value_size)
    src = memoryview(records).cast(code)
    src_step, key_words = step // width, KEY_SIZE // width
    keys = bytearray(count * KEY_SIZE)
    key_view = memoryview(keys).cast(code)
    # one strided copy per machine word: C loops, no per-record Python objects
    for word in range(key_words):
        key_view[word::key_words] = src[word::src_step]
    if keys != iota(first + count)[first * KEY_SIZE :]:
        return None
    return _values(records, value_size, count, (width, code))


def _values(
    records: Buffer, value_size: int, count: int, lane: tuple[int, Literal["I", "H", "B"]]
) -> bytearray:
    """The records' values, each padded to the array's stride.

    Removing the keys in place (a byte at a time, by extended-slice deletion, which moves
    whole runs of bytes) is several times cheaper than a strided copy per machine word of
    the value. It serves values that need no padding, and those whose padding is exactly a
    key long: shifted by one key, each record's value is followed by the next key's bytes,
    which are then zeroed.
    """
    step, gap = KEY_SIZE + value_size, image_stride(value_size)
    if gap == value_size:
        out = bytearray(records)
        for removed in range(KEY_SIZE):
            del out[0 :: step - removed]
        return out
    if gap == step:
        out = bytearray(memoryview(records)[KEY_SIZE:])
        out += bytes(KEY_SIZE)
        if value_size % KEY_SIZE == 0:
            words = memoryview(out).cast("I")
            words[value_size // KEY_SIZE :: gap // KEY_SIZE] = memoryview(bytes(count * 4)).cast(
                "I"
            )
        else:
            for offset in range(value_size, value_size + KEY_SIZE):
                out[offset::gap] = bytes(count)
        return out
    width, code = lane
    out = bytearray(count * gap)
    src, dst = memoryview(records).cast(code), memoryview(out).cast(code)
    src_step, dst_step, key_words = step // width, gap // width, KEY_SIZE // width
    # one strided copy per machine word: C loops, no per-record Python objects
    for word in range(value_size // width):
        dst[word::dst_step] = src[key_words + word :: src_step]
    return out


@dataclass(frozen=True)
class Written:
    blocks: int  # _BLOCK-sized pieces that differed and were copied
    elements: int  # elements they hold


def write(fd: int, info: libbpf.MapInfo, want: bytearray | bytes) -> Written:
    """Make the mmapable array `fd` hold `want` then zeros, copying only the blocks that differ.

    The zeros clear what an earlier, larger policy left above the new seed's range.
    """
    size = info.max_entries * image_stride(info.value_size)
    if len(want) > size:
        raise ValueError(f"image of {len(want)} bytes for a map of {size}")
    mapped = mmap.mmap(fd, size, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
    try:
        live = ctypes.c_char.from_buffer(mapped)
        # a bytes object is read in place (c_char_p points into it); a bytearray is exported
        new = ctypes.c_char.from_buffer(want) if want and isinstance(want, bytearray) else None
        try:
            base_live = ctypes.addressof(live)
            if new is not None:
                base_new = ctypes.addressof(new)
            else:
                base_new = _address(want) if isinstance(want, bytes) and want else 0
            blocks = copied = 0
            for start in range(0, size, _BLOCK):
                length = min(_BLOCK, size - start)
                # the image's part of this block, then the zero tail
                part = max(0, min(length, len(want) - start))
                if (part and _libc.memcmp(base_live + start, base_new + start, part)) or (
                    part < length
                    and _libc.memcmp(base_live + start + part, _ZERO_BLOCK, length - part)
                ):
                    if part:
                        ctypes.memmove(base_live + start, base_new + start, part)
                    if part < length:
                        ctypes.memset(base_live + start + part, 0, length - part)
                    blocks += 1
                    copied += length
        finally:
            # the buffer exports must go before the mapping can close
            del live, new
    finally:
        mapped.close()
    return Written(blocks, copied // image_stride(info.value_size))


def _address(data: bytes) -> int:
    """Where a bytes object keeps its contents (c_char_p points into it, it does not copy)."""
    return ctypes.cast(ctypes.c_char_p(data), ctypes.c_void_p).value or 0


def patch(fd: int, info: libbpf.MapInfo, old: bytes, new: bytes, value_size: int) -> Written | None:
    """Make the array that holds the image of the `old` records (then zeros) hold the image
    of the `new` ones, building and copying only the blocks of records that differ.

    None, with the map untouched, when most blocks differ (the whole image is then cheaper)
    or a differing block's keys are not its indexes. An edit changes a few blocks: comparing
    the records costs a memcmp, where a whole image costs a strided copy of every value.
    """
    step = KEY_SIZE + value_size
    count, old_count = len(new) // step, len(old) // step
    if count * step != len(new) or old_count * step != len(old):
        return None
    if max(count, old_count) > info.max_entries:
        return None
    per = max(1, _BLOCK // step)
    size, longest = per * step, max(len(old), len(new))
    at_old, at_new = _address(old), _address(new)
    differ = [
        start
        for start in range(0, longest, size)
        if (both := max(0, min(size, len(old) - start, len(new) - start)))
        != min(size, longest - start)
        or _libc.memcmp(at_old + start, at_new + start, both)
    ]
    if len(differ) * 2 > -(-longest // size):
        # mostly new: one whole image is cheaper than many small ones
        return None
    parts: list[tuple[int, bytearray]] = []
    for start in differ:
        first = start // step
        last = min(first + per, count)
        if first < last:
            part = image(new[start : last * step], value_size, info.max_entries, first)
            if part is None:
                return None
            parts.append((first, part))
    gap = image_stride(value_size)
    mapped = mmap.mmap(
        fd, info.max_entries * gap, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE
    )
    try:
        live = ctypes.c_char.from_buffer(mapped)
        try:
            base = ctypes.addressof(live)
            for first, part in parts:
                ctypes.memmove(
                    base + first * gap, (ctypes.c_char * len(part)).from_buffer(part), len(part)
                )
            if old_count > count:
                ctypes.memset(base + count * gap, 0, (old_count - count) * gap)
        finally:
            del live
    finally:
        mapped.close()
    elements = sum(len(part) for _, part in parts) // gap + max(0, old_count - count)
    return Written(len(parts), elements)


def copy(source: int, target: int, info: libbpf.MapInfo) -> Written:
    """Make the mmapable array `target` hold what `source` (of the same shape) holds, copying
    only the blocks that differ."""
    size = info.max_entries * image_stride(info.value_size)
    protection = mmap.PROT_READ | mmap.PROT_WRITE
    src = mmap.mmap(source, size, mmap.MAP_SHARED, protection)
    try:
        dst = mmap.mmap(target, size, mmap.MAP_SHARED, protection)
        try:
            src_buffer, dst_buffer = ctypes.c_char.from_buffer(src), ctypes.c_char.from_buffer(dst)
            try:
                base_src, base_dst = ctypes.addressof(src_buffer), ctypes.addressof(dst_buffer)
                blocks = copied = 0
                for start in range(0, size, _BLOCK):
                    length = min(_BLOCK, size - start)
                    if _libc.memcmp(base_dst + start, base_src + start, length):
                        ctypes.memmove(base_dst + start, base_src + start, length)
                        blocks += 1
                        copied += length
            finally:
                del src_buffer, dst_buffer
        finally:
            dst.close()
    finally:
        src.close()
    return Written(blocks, copied // image_stride(info.value_size))
