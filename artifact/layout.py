"""What the compiler writes and the loader reads besides the manifest: sections, sizes, layouts."""

from __future__ import annotations

import functools
import struct

FORMAT = 2
MANIFEST_SECTION = ".fwc.manifest"
PROGRAM_SECTION = "xdp"
SEED_SECTION_PREFIX = ".fwc.seed."
INSN_SIZE = 8  # one BPF instruction

COUNTERS_MAP = "fwc_counters"
BUCKETS_MAP = "fwc_buckets"
EVENTS_MAP = "fwc_events"
GEN_MAP = "fwc_gen"  # the tables strategy's live generation, a one-element u32 array
GENERATIONS = (0, 1)

# struct { __u64 packets; __u64 bytes; }, one per CPU in a percpu_array
COUNTER = struct.Struct("<QQ")
COUNTER_KEY_SIZE = 4

# seed layouts: (key, value) records, or the array's memory with keys 0 .. count-1 implied
RECORDS = "records"
IMAGE = "image"
LAYOUTS = (RECORDS, IMAGE)
IMAGE_KEY_SIZE = 4
IMAGE_ALIGN = 8  # the kernel rounds an array's values up to 8 bytes

# the tables whose values hold counter slots, which a live update moves to the live slots
CFG_TABLE = "fwc_cfg"
RULE_TABLE = "fwc_rule"
# fwc_cfg's value begins with ngroups, default action, the four special counter slots
# (default, malformed, non_ip, would_drop), array_size and bucket_mask; the groups follow
CFG_HEADER = struct.Struct("<6I2Q")
CFG_SLOTS = slice(2, 6)  # the counter slots among the value's leading u32 fields
# fwc_rule's value: XDP action, counter slot
RULE_VALUE = struct.Struct("<II")
RULE_SLOTS = slice(1, None, 2)  # the slot column of an fwc_rule image, as u32 words


def image_stride(value_size: int) -> int:
    """Bytes between two elements of an array map (and of an image seed)."""
    return -(-value_size // IMAGE_ALIGN) * IMAGE_ALIGN


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


def image_records(image: bytes | bytearray | memoryview, value_size: int) -> bytes:
    """An image seed as (key, value) records: each value after its u32 index."""
    stride, step = image_stride(value_size), IMAGE_KEY_SIZE + value_size
    count = len(image) // stride
    out = bytearray(count * step)
    keys = iota(count)
    for b in range(IMAGE_KEY_SIZE):
        out[b::step] = keys[b::IMAGE_KEY_SIZE]
    for b in range(value_size):
        out[IMAGE_KEY_SIZE + b :: step] = image[b::stride]
    return bytes(out)


def generation_map(base: str, generation: int) -> str:
    """The name of generation `generation` of the table map `base` ("fwc_cfg" -> "fwc_cfg1")."""
    return f"{base}{generation}"


def generation_base(name: str) -> str | None:
    """The table `name` is generation 0 of ("fwc_cfg0" -> "fwc_cfg"), or None for any other map."""
    return name[:-1] if name.endswith("0") else None
