"""Address lists as sorted integer intervals: union, intersection, complement, and the
exact CIDR cover of each result."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

Net = ipaddress.IPv4Network | ipaddress.IPv6Network
Interval = tuple[int, int]


def width(version: int) -> int:
    return 32 if version == 4 else 128


def parse_net(text: str) -> Net:
    """`text` as a network; host bits below the mask are cleared, as iptables and nft do."""
    return ipaddress.ip_network(text, strict=False)


def full(version: int) -> Net:
    return ipaddress.ip_network("0.0.0.0/0" if version == 4 else "::/0")


def _intervals(nets: Iterable[Net], version: int) -> list[Interval]:
    spans = sorted(
        (int(n.network_address), int(n.broadcast_address)) for n in nets if n.version == version
    )
    merged: list[Interval] = []
    for lo, hi in spans:
        if merged and lo <= merged[-1][1] + 1:
            merged[-1] = (merged[-1][0], max(hi, merged[-1][1]))
        else:
            merged.append((lo, hi))
    return merged


def _cover(spans: Iterable[Interval], version: int) -> list[Net]:
    make = ipaddress.IPv4Address if version == 4 else ipaddress.IPv6Address
    out: list[Net] = []
    for lo, hi in spans:
        out.extend(ipaddress.summarize_address_range(make(lo), make(hi)))
    return out


def cover_range(first: str, last: str) -> tuple[Net, ...]:
    """The exact CIDR cover of an address range `first`-`last` (both included)."""
    a, b = ipaddress.ip_address(first), ipaddress.ip_address(last)
    if a.version != b.version or int(a) > int(b):
        raise ValueError(f"{first}-{last} is not an address range")
    return tuple(_cover([(int(a), int(b))], a.version))


def normalize(nets: Iterable[Net]) -> tuple[Net, ...]:
    """The same addresses as the fewest CIDRs, IPv4 first."""
    listed = list(nets)
    return tuple(_cover(_intervals(listed, 4), 4) + _cover(_intervals(listed, 6), 6))


def complement(nets: Iterable[Net], version: int) -> tuple[Net, ...]:
    """Every address of `version` outside `nets`."""
    spans = _intervals(nets, version)
    out: list[Interval] = []
    nxt = 0
    for lo, hi in spans:
        if lo > nxt:
            out.append((nxt, lo - 1))
        nxt = hi + 1
    top = (1 << width(version)) - 1
    if nxt <= top:
        out.append((nxt, top))
    return tuple(_cover(out, version))


def intersect(a: Iterable[Net], b: Iterable[Net]) -> tuple[Net, ...]:
    """The addresses in both lists."""
    listed_a, listed_b = list(a), list(b)
    out: list[Net] = []
    for version in (4, 6):
        left, right = _intervals(listed_a, version), _intervals(listed_b, version)
        spans: list[Interval] = []
        i = j = 0
        while i < len(left) and j < len(right):
            lo, hi = max(left[i][0], right[j][0]), min(left[i][1], right[j][1])
            if lo <= hi:
                spans.append((lo, hi))
            if left[i][1] < right[j][1]:
                i += 1
            else:
                j += 1
        out.extend(_cover(spans, version))
    return tuple(out)


def only(nets: Iterable[Net], version: int) -> tuple[Net, ...]:
    return tuple(n for n in nets if n.version == version)
