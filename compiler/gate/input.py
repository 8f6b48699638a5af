"""The Rego input document: the normalized policy as JSON, addresses as fixed-width hex ranges.

Every address carries its first and last address as lowercase hex of the family's full
width (8 digits for IPv4, 32 for IPv6), so plain string comparison orders addresses and
invariants need no `net.*` built-ins. docs/rego.md describes the shape.
"""

from __future__ import annotations

from typing import Any

from fwc.compiler.policy.ir import TCP_FLAGS, AddressRange, Family, Policy, PortRange, Rule

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


def rule_doc(rule: Rule) -> dict[str, Any]:
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
        "file": rule.location.file,
        "line": rule.location.line,
    }


def set_entry_doc(entry: AddressRange | PortRange) -> dict[str, Any]:
    return address_doc(entry) if isinstance(entry, AddressRange) else port_doc(entry)


def policy_doc(policy: Policy) -> dict[str, Any]:
    """The whole input document for `policy`."""
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
        "rules": [rule_doc(rule) for rule in policy.rules],
    }
