"""Sets of packets as unions of disjoint cubes: products of per-field sets, with exact subtraction.

Addresses and ports are sorted disjoint closed intervals; the small fields (family,
fragment, protocol class, TCP flags, ICMP type, interface class) are bitmasks over their values.
"""

from __future__ import annotations

import itertools
from bisect import bisect_right
from typing import NamedTuple, cast

Intervals = tuple[tuple[int, int], ...]
Field = int | Intervals
# The interface field of a policy whose rules name no interfaces: every class (all bits set).
ANY_INTERFACE = -1


class Cube(NamedTuple):
    """The packets whose every field lies in the cube's set for that field."""

    family: int  # bit 0: IPv4, bit 1: IPv6
    src: Intervals
    dst: Intervals
    fragment: int  # bit 0: unfragmented or first fragment, bit 1: non-first fragment
    protocol: int  # one bit per protocol class (match.PROTOCOL_CLASSES)
    sport: Intervals  # match.NO_PORT stands for "no port": not TCP or UDP
    dport: Intervals
    tcp_flags: int  # bit v for flags byte v; bit 256: not TCP
    icmp_type: int  # bit v for type v; bit 256: not ICMP
    # bit k for interface class k (compiler/policy/interfaces.py); ANY_INTERFACE: every class
    interface: int = ANY_INTERFACE


Region = list[Cube]


def _inside(b: Intervals, lo: int, hi: int) -> Intervals:
    """The spans of `b` that meet lo..hi, clipped to it: found by bisection, copied whole."""
    i = bisect_right(b, lo, key=_end_key)
    j = bisect_right(b, hi, key=_start)
    part = b[i:j]
    if part and (part[0][0] < lo or part[-1][1] > hi):
        edges = list(part)
        edges[0] = (max(edges[0][0], lo), edges[0][1])
        edges[-1] = (edges[-1][0], min(edges[-1][1], hi))
        return tuple(edges)
    return part


def _end_key(span: tuple[int, int]) -> int:
    return span[1] + 1  # bisect_right on lo finds the first span ending at or after lo


def _few(a: Intervals, b: Intervals) -> bool:
    """Whether walking `a` and bisecting `b` beats walking both."""
    return len(a) * len(b).bit_length() < len(b)


def meet_intervals(a: Intervals, b: Intervals) -> Intervals:
    if len(a) > len(b):
        a, b = b, a
    if _few(a, b):
        # A rule's few spans against a blocklist's many: slices of the long side.
        met: Intervals = ()
        for lo, hi in a:
            met += _inside(b, lo, hi)
        return met
    out: list[tuple[int, int]] = []
    i = j = 0
    while i < len(a) and j < len(b):
        lo = max(a[i][0], b[j][0])
        hi = min(a[i][1], b[j][1])
        if lo <= hi:
            out.append((lo, hi))
        if a[i][1] < b[j][1]:
            i += 1
        else:
            j += 1
    return tuple(out)


def _start(span: tuple[int, int]) -> int:
    return span[0]


def intervals_overlap(a: Intervals, b: Intervals) -> bool:
    if len(a) > len(b):
        a, b = b, a
    if len(a) * len(b).bit_length() < len(b):
        # A few spans against many (a rule against a blocklist): bisect the long side.
        for lo, hi in a:
            k = bisect_right(b, hi, key=_start) - 1
            if k >= 0 and b[k][1] >= lo:
                return True
        return False
    i = j = 0
    while i < len(a) and j < len(b):
        if a[i][1] < b[j][0]:
            i += 1
        elif b[j][1] < a[i][0]:
            j += 1
        else:
            return True
    return False


# Recent `_minus_many` results for long right-hand sides, by the short side's value and
# the long side's identity (each entry holds the long side, so the identity stays its):
# the analysis takes one blocklist out of every service rule's whole address space.
_LONG = 4096
_recent: dict[tuple[Intervals, int], tuple[Intervals, Intervals]] = {}


def minus_intervals(a: Intervals, b: Intervals) -> Intervals:
    if _few(a, b):
        if len(b) < _LONG:
            return _minus_many(a, b)
        key = (a, id(b))
        hit = _recent.get(key)
        if hit is None:
            if len(_recent) >= 16:
                _recent.clear()
            hit = _recent[key] = (b, _minus_many(a, b))
        return hit[1]
    out: list[tuple[int, int]] = []
    j = 0
    for lo, hi in a:
        while j < len(b) and b[j][1] < lo:
            j += 1
        k = j
        while k < len(b) and b[k][0] <= hi:
            if b[k][0] > lo:
                out.append((lo, b[k][0] - 1))
            lo = b[k][1] + 1
            k += 1
        if lo <= hi:
            out.append((lo, hi))
    return tuple(out)


def _minus_many(a: Intervals, b: Intervals) -> Intervals:
    """`minus_intervals` for a few spans less many: the gaps between the long side's spans
    inside each short span, by one comprehension."""
    out: list[tuple[int, int]] = []
    for lo, hi in a:
        part = _inside(b, lo, hi)
        if not part:
            out.append((lo, hi))
            continue
        if part[0][0] > lo:
            out.append((lo, part[0][0] - 1))
        out += [(h + 1, n - 1) for (_, h), (n, _) in itertools.pairwise(part) if h + 1 < n]
        if part[-1][1] < hi:
            out.append((part[-1][1] + 1, hi))
    return tuple(out)


def union_intervals(a: Intervals, b: Intervals) -> Intervals:
    out: list[tuple[int, int]] = []
    for lo, hi in sorted(a + b):
        if out and lo <= out[-1][1] + 1:
            out[-1] = (out[-1][0], max(out[-1][1], hi))
        else:
            out.append((lo, hi))
    return tuple(out)


def _fields(cube: Cube) -> tuple[Field, ...]:
    return cast("tuple[Field, ...]", cube)


def _meet(x: Field, y: Field) -> Field:
    if isinstance(x, int):
        assert isinstance(y, int)
        return x & y
    assert not isinstance(y, int)
    return meet_intervals(x, y)


def _minus(x: Field, y: Field) -> Field:
    if isinstance(x, int):
        assert isinstance(y, int)
        return x & ~y
    assert not isinstance(y, int)
    return minus_intervals(x, y)


def overlaps(a: Cube, b: Cube) -> bool:
    """Whether the cubes share a packet; the cheap bitmask fields are tested first."""
    return bool(
        a.family & b.family
        and a.fragment & b.fragment
        and a.protocol & b.protocol
        and a.tcp_flags & b.tcp_flags
        and a.icmp_type & b.icmp_type
        and a.interface & b.interface
        and intervals_overlap(a.src, b.src)
        and intervals_overlap(a.dport, b.dport)
        and intervals_overlap(a.sport, b.sport)
        and intervals_overlap(a.dst, b.dst)
    )


def meet(a: Cube, b: Cube) -> Cube | None:
    """The intersection, or None when it is empty."""
    if not overlaps(a, b):
        return None
    return Cube._make(_meet(x, y) for x, y in zip(_fields(a), _fields(b), strict=True))


def minus(a: Cube, b: Cube) -> Region:
    """`a` without `b`, as disjoint cubes: field by field, the part of `a` that leaves `b`
    in that field while agreeing with `b` in every field before it."""
    if not overlaps(a, b):
        return [a]
    out: Region = []
    fields = list(_fields(a))
    for i, (x, y) in enumerate(zip(_fields(a), _fields(b), strict=True)):
        rest = _minus(x, y)
        if rest:
            out.append(Cube._make([*fields[:i], rest, *fields[i + 1 :]]))
        fields[i] = _meet(x, y)
    return out


def region_minus(region: Region, cube: Cube) -> Region:
    out: Region = []
    for piece in region:
        out.extend(minus(piece, cube))
    return out


def region_minus_all(region: Region, cubes: Region) -> Region:
    for cube in cubes:
        if not region:
            break
        region = region_minus(region, cube)
    return region


def region_meet(region: Region, cubes: Region) -> Region:
    """The part of `region` inside `cubes` (both unions of disjoint cubes)."""
    out: Region = []
    for a in region:
        for b in cubes:
            c = meet(a, b)
            if c is not None:
                out.append(c)
    return out


def region_overlaps(region: Region, cubes: Region) -> bool:
    return any(overlaps(a, b) for a in region for b in cubes)


def merge(region: Region) -> Region:
    """Joins cubes that differ in one field only, until none do; the union is unchanged."""
    cubes = list(region)
    joined = True
    while joined:
        joined = False
        for i in range(len(cubes)):
            for j in range(i + 1, len(cubes)):
                both = _join(cubes[i], cubes[j])
                if both is not None:
                    cubes[i] = both
                    del cubes[j]
                    joined = True
                    break
            if joined:
                break
    return cubes


def _join(a: Cube, b: Cube) -> Cube | None:
    pairs = list(zip(_fields(a), _fields(b), strict=True))
    differ = [i for i, (x, y) in enumerate(pairs) if x != y]
    if len(differ) != 1:
        return None
    i = differ[0]
    x, y = pairs[i]
    joined: Field
    if isinstance(x, int):
        assert isinstance(y, int)
        joined = x | y
    else:
        assert not isinstance(y, int)
        joined = union_intervals(x, y)
    return Cube._make([*a[:i], joined, *a[i + 1 :]])
