"""The Rego input document: the normalized policy and its behaviour as JSON, addresses as
fixed-width hex ranges.

Every address carries its first and last address as lowercase hex of the family's full
width (8 digits for IPv4, 32 for IPv6), so plain string comparison orders addresses and
invariants need no `net.*` built-ins. docs/rego.md describes the shape.
"""

from __future__ import annotations

import functools
import heapq
import ipaddress
from bisect import bisect_right
from collections import Counter
from typing import Any, cast

from fwc.compiler.analysis.match import (
    ALL_PROTOCOLS,
    BYTE_VALUES,
    FAMILY_BITS,
    NO_PORT,
    NON_FIRST,
    PROTOCOL_CLASSES,
)
from fwc.compiler.analysis.region import flag_pattern
from fwc.compiler.analysis.review import Review, review
from fwc.compiler.analysis.space import ANY_INTERFACE, Cube, Intervals
from fwc.compiler.analysis.verdicts import Part, passed
from fwc.compiler.policy.interfaces import NO_INTERFACES, InterfaceClasses
from fwc.compiler.policy.ir import TCP_FLAGS, Action, AddressRange, Family, Policy, PortRange, Rule

FAMILY_NAMES = {Family.IPV4: "ipv4", Family.IPV6: "ipv6"}


def hex_address(family: Family, value: int) -> str:
    """`value` as lowercase hex, zero-padded to the family's width."""
    return format(value, f"0{family.width // 4}x")


# Key order matters for speed, not meaning: regopy finds an object's key by scanning its
# keys in insertion order, so the keys invariants test on every entry come first.


def address_doc(address: AddressRange) -> dict[str, Any]:
    return {
        "prefix_len": address.prefix_len,
        "family": FAMILY_NAMES[address.family],
        "first": hex_address(address.family, address.first),
        "last": hex_address(address.family, address.last),
        "cidr": str(address),
    }


def port_doc(port: PortRange) -> dict[str, int]:
    return {"first": port.first, "last": port.last}


def _flag_names(bits: int) -> list[str]:
    return [name for name, bit in TCP_FLAGS.items() if bits & bit]


# An address list longer than this (a blocklist) is passed as its widest entries, flagged
# incomplete, so the input stays small whatever the lists hold (docs/rego.md).
LARGE_LIST = 1024


def widest(addresses: tuple[AddressRange, ...], keep: int = LARGE_LIST) -> list[AddressRange]:
    """The `keep` widest entries of `addresses`, widest first (then by family and address)."""
    counts = Counter(a.prefix_len for a in addresses)
    cut, total = 0, 0
    for length in sorted(counts):
        cut, total = length, total + counts[length]
        if total >= keep:
            break
    chosen = [a for a in addresses if a.prefix_len <= cut]
    chosen.sort(key=lambda a: (a.prefix_len, a.family, a.network))
    return chosen[:keep]


def address_list(addresses: tuple[AddressRange, ...]) -> tuple[list[dict[str, Any]], bool]:
    """An address field or set as docs, and whether the docs hold all of it."""
    if len(addresses) <= LARGE_LIST:
        return [address_doc(a) for a in addresses], True
    return [address_doc(a) for a in widest(addresses)], False


def large_set_doc(entries: tuple[AddressRange, ...]) -> dict[str, Any]:
    """A set of more than LARGE_LIST addresses: its size per family and its widest entries."""
    v4 = sum(1 for a in entries if a.family is Family.IPV4)
    return {
        "size": len(entries),
        "ipv4": v4,
        "ipv6": len(entries) - v4,
        "widest": [address_doc(a) for a in widest(entries, 64)],
    }


def rule_doc(
    rule: Rule, reachable: bool, shadowed_by: list[str], redundant: bool
) -> dict[str, Any]:
    sources, sources_complete = address_list(rule.sources)
    destinations, destinations_complete = address_list(rule.destinations)
    return {
        "action": rule.action.value,
        "protocol": rule.protocol.value,
        "source_cidrs": sources,
        "destination_ports": [port_doc(p) for p in rule.destination_ports],
        "description": rule.description,
        "icmp_types": list(rule.icmp_types),
        "source_ports": [port_doc(p) for p in rule.source_ports],
        "tcp_flags": {
            "set": _flag_names(rule.tcp_flags_set),
            "clear": _flag_names(rule.tcp_flags_clear),
        },
        "rate_limit_pps": rule.rate_limit_pps,
        "name": rule.name,
        "id": rule.id,
        "destination_cidrs": destinations,
        "priority": rule.priority,
        "rate_limit_burst": rule.rate_limit_burst,
        "log": rule.log,
        "interfaces": list(rule.interfaces),
        "not_interfaces": list(rule.not_interfaces),
        "file": rule.location.file,
        "line": rule.location.line,
        "reachable": reachable,
        "shadowed_by": shadowed_by,
        "redundant": redundant,
        "source_cidrs_complete": sources_complete,
        "destination_cidrs_complete": destinations_complete,
    }


def set_entry_doc(entry: AddressRange | PortRange) -> dict[str, Any]:
    return address_doc(entry) if isinstance(entry, AddressRange) else port_doc(entry)


@functools.lru_cache(maxsize=4096)
def _cidr_docs(spans: Intervals, family: Family) -> list[dict[str, Any]]:
    """The spans as address docs; cached, as most regions share a side (every address)."""
    make = ipaddress.IPv4Address if family is Family.IPV4 else ipaddress.IPv6Address
    out: list[dict[str, Any]] = []
    for lo, hi in spans:
        for net in ipaddress.summarize_address_range(make(lo), make(hi)):
            out.append(address_doc(AddressRange(family, int(net.network_address), net.prefixlen)))
    return out


def blocks(lo: int, hi: int, width: int) -> list[tuple[int, int]]:
    """The fewest CIDRs, as (network, prefix length), that make up addresses lo..hi."""
    out: list[tuple[int, int]] = []
    while lo <= hi:
        size = (lo & -lo).bit_length() - 1 if lo else width
        while size and lo + (1 << size) - 1 > hi:
            size -= 1
        out.append((lo, width - size))
        lo += 1 << size
    return out


def _widest_blocks(
    spans: Intervals, family: Family, near: list[tuple[int, int]]
) -> list[AddressRange]:
    """The LARGE_LIST widest CIDRs of the spans (then by address), and every CIDR of them
    that overlaps one of `near` (the small sets' entries: a management network wholly
    inside the region is inside one of these)."""
    width = family.width
    # A span of n addresses holds a CIDR of more than n/4; so the LARGE_LIST longest spans
    # hold that many CIDRs of at least `least` addresses, and only spans that long hold one.
    lengths = [hi - lo for lo, hi in spans]
    longest = heapq.nlargest(LARGE_LIST, lengths)
    kth = longest[-1] + 1 if len(longest) == LARGE_LIST else 0
    least = 1 << ((kth + 1) // 4).bit_length() if kth else 1
    found: list[tuple[int, int]] = []
    for (lo, hi), length in zip(spans, lengths, strict=True):
        if length + 1 >= least:
            start = -(-lo // least) * least
            found.extend(blocks(start, (hi + 1) // least * least - 1, width))
    found.sort(key=lambda b: (b[1], b[0]))
    chosen = set(found[:LARGE_LIST])
    for first, last in near:
        k = bisect_right(spans, last, key=lambda span: span[0]) - 1
        while k >= 0 and spans[k][1] >= first:
            chosen.update(
                b
                for b in blocks(*spans[k], width)
                if b[0] <= last and first < b[0] + (1 << (width - b[1]))
            )
            k -= 1
    return [AddressRange(family, n, p) for n, p in sorted(chosen, key=lambda b: (b[1], b[0]))]


def _region_cidrs(
    spans: Intervals, family: Family, near: list[tuple[int, int]]
) -> tuple[list[dict[str, Any]], bool]:
    """A region's addresses, and whether they are all there; empty for every address of its
    family, as in a rule (and most regions have one such side: the input stays small)."""
    if spans == ((0, (1 << family.width) - 1),):
        return [], True
    if len(spans) <= LARGE_LIST:
        return _cidr_docs(spans, family), True
    return [address_doc(a) for a in _widest_blocks(spans, family, near)], False


def _port_docs(spans: Intervals) -> tuple[list[dict[str, int]], int]:
    """A port field as ranges (empty: every port, or none carried) and how many it holds."""
    if spans[-1][1] == NO_PORT or spans == ((0, 65535),):
        return [], 65536
    return [{"first": lo, "last": hi} for lo, hi in spans], sum(hi - lo + 1 for lo, hi in spans)


_FAMILIES = {bit: family for family, bit in FAMILY_BITS.items()}


def _interfaces_doc(cube: Cube, classes: InterfaceClasses) -> dict[str, Any]:
    """The region's interface classes in words (none: every interface), and whether
    loopback is the only interface it can arrive on."""
    if not classes.used or cube.interface == ANY_INTERFACE:
        return {"interfaces": [], "loopback": False}
    bits = [k for k in range(len(classes.classes)) if cube.interface >> k & 1]
    return {
        "interfaces": [classes.describe(k) for k in bits],
        "loopback": all(classes.loopback >> k & 1 for k in bits),
    }


def region_doc(
    part: Part,
    near: dict[Family, list[tuple[int, int]]] | None = None,
    classes: InterfaceClasses = NO_INTERFACES,
) -> dict[str, Any]:
    """One region of `analysis.allowed` or `analysis.rate_limited`, written like a rule's
    match, with the rules that decide it (see docs/rego.md); `near` are the small sets'
    entries per family, kept in a region side too large to write whole."""
    cube = part.cube
    family = _FAMILIES[cube.family]
    close = (near or {}).get(family, [])
    sources, sources_complete = _region_cidrs(cube.src, family, close)
    destinations, destinations_complete = _region_cidrs(cube.dst, family, close)
    protocol = (
        "any"
        if cube.protocol == ALL_PROTOCOLS
        else PROTOCOL_CLASSES[cube.protocol.bit_length() - 1]
    )
    icmp = cube.icmp_type & BYTE_VALUES
    icmp_types = [] if icmp == BYTE_VALUES else [v for v in range(256) if icmp >> v & 1]
    must_set, must_clear = flag_pattern(cube.tcp_flags) or (0, 0)
    source_ports, source_count = _port_docs(cube.sport)
    destination_ports, destination_count = _port_docs(cube.dport)
    return {
        "protocol": protocol,
        "family": FAMILY_NAMES[family],
        "source_cidrs": sources,
        "fragment": "non-first" if cube.fragment == NON_FIRST else "first-or-none",
        "destination_ports": destination_ports,
        "destination_port_count": destination_count,
        "tcp_flags": {"set": _flag_names(must_set), "clear": _flag_names(must_clear)},
        "source_ports": source_ports,
        "source_port_count": source_count,
        "destination_cidrs": destinations,
        "icmp_types": icmp_types,
        "rules": [name or "default" for name in part.rules],
        "source_cidrs_complete": sources_complete,
        "destination_cidrs_complete": destinations_complete,
        **_interfaces_doc(cube, classes),
    }


def _rules_doc(done: Review) -> list[dict[str, Any]]:
    # By identity: the review holds the policy's own rule objects.
    covers = {id(s.rule): [r.name for r in s.cover] for s in done.shadowed}
    extra = {id(r.rule) for r in done.redundant}
    return [
        rule_doc(rule, bool(region), covers.get(id(rule), []), id(rule) in extra)
        for rule, region in zip(done.policy.rules, done.reached, strict=True)
    ]


def policy_doc(policy: Policy, done: Review | None = None) -> dict[str, Any]:
    """The whole input document for `policy`; `done` is its review, made here when absent."""
    done = done if done is not None else review(policy)
    parts = passed(done.index, done.reached)
    small = {n: e for n, e in policy.sets if len(e) <= LARGE_LIST or isinstance(e[0], PortRange)}
    near: dict[Family, list[tuple[int, int]]] = {f: [] for f in Family}
    for entries in small.values():
        for e in entries:
            if isinstance(e, AddressRange):
                near[e.family].append((e.first, e.last))
    classes = done.index.interfaces
    return {
        "name": policy.name,
        "default_action": policy.default_action.value,
        "file": policy.source_file,
        "sha256": policy.source_sha256,
        "interfaces": {
            "include": list(policy.interfaces.include),
            "exclude": list(policy.interfaces.exclude),
        },
        "sets": {name: [set_entry_doc(e) for e in entries] for name, entries in small.items()},
        "large_sets": {
            name: large_set_doc(cast("tuple[AddressRange, ...]", entries))
            for name, entries in policy.sets
            if name not in small
        },
        "rules": _rules_doc(done),
        "analysis": {
            "allowed": [region_doc(p, near, classes) for p in parts if p.action is Action.ALLOW],
            "rate_limited": [
                region_doc(p, near, classes) for p in parts if p.action is Action.RATE_LIMIT
            ],
        },
    }
