"""The Rego input document: the normalized policy and its behaviour as JSON, addresses as
fixed-width hex ranges.

Every address carries its first and last address as lowercase hex of the family's full
width (8 digits for IPv4, 32 for IPv6), so plain string comparison orders addresses and
invariants need no `net.*` built-ins. docs/rego.md describes the shape.
"""

from __future__ import annotations

import functools
import ipaddress
from typing import Any

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


def rule_doc(
    rule: Rule, reachable: bool, shadowed_by: list[str], redundant: bool
) -> dict[str, Any]:
    return {
        "action": rule.action.value,
        "protocol": rule.protocol.value,
        "source_cidrs": [address_doc(a) for a in rule.sources],
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
        "destination_cidrs": [address_doc(a) for a in rule.destinations],
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


def _region_cidrs(spans: Intervals, family: Family) -> list[dict[str, Any]]:
    """A region's addresses; empty for every address of its family, as in a rule (and
    most regions have one such side: the input stays small)."""
    if spans == ((0, (1 << family.width) - 1),):
        return []
    return _cidr_docs(spans, family)


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


def region_doc(part: Part, classes: InterfaceClasses = NO_INTERFACES) -> dict[str, Any]:
    """One region of `analysis.allowed` or `analysis.rate_limited`, written like a rule's
    match, with the rules that decide it (see docs/rego.md)."""
    cube = part.cube
    family = _FAMILIES[cube.family]
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
        "source_cidrs": _region_cidrs(cube.src, family),
        "fragment": "non-first" if cube.fragment == NON_FIRST else "first-or-none",
        "destination_ports": destination_ports,
        "destination_port_count": destination_count,
        "tcp_flags": {"set": _flag_names(must_set), "clear": _flag_names(must_clear)},
        "source_ports": source_ports,
        "source_port_count": source_count,
        "destination_cidrs": _region_cidrs(cube.dst, family),
        "icmp_types": icmp_types,
        "rules": [name or "default" for name in part.rules],
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
        "sets": {name: [set_entry_doc(e) for e in entries] for name, entries in policy.sets},
        "rules": _rules_doc(done),
        "analysis": {
            "allowed": [region_doc(p, classes) for p in parts if p.action is Action.ALLOW],
            "rate_limited": [
                region_doc(p, classes) for p in parts if p.action is Action.RATE_LIMIT
            ],
        },
    }
