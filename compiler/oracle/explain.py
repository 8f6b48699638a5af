"""Explains a verdict: the deciding rule, and the earlier rules that missed by one or two fields."""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass

from fwc.compiler.oracle.evaluate import Verdict, evaluate, failed_fields
from fwc.compiler.oracle.packet import Packet
from fwc.compiler.policy.ir import CT_STATES, TCP_FLAGS, Family, Policy, Rule

NEAR_MISS_FIELDS = 2
_PROTOCOL_NAMES = {6: "tcp", 17: "udp", 1: "icmp", 58: "icmpv6"}
_LIST_LIMIT = 6


@dataclass(frozen=True)
class NearMiss:
    rule: Rule
    reasons: tuple[str, ...]  # one per field that did not match


@dataclass(frozen=True)
class Explanation:
    verdict: Verdict
    near_misses: tuple[NearMiss, ...]  # in evaluation order


def explain(
    policy: Policy,
    frame: bytes,
    dry_run: bool = False,
    interface: str | None = None,
    ct_state: str = "new",
) -> Explanation:
    verdict = evaluate(policy, frame, dry_run, interface=interface, ct_state=ct_state)
    packet = verdict.packet
    if packet.klass != "ip":
        return Explanation(verdict, ())
    last = verdict.rule.id if verdict.rule is not None else len(policy.rules)
    misses = []
    for rule in policy.rules[:last]:
        failed = _collapse(failed_fields(rule, packet), packet)
        if 0 < len(failed) <= NEAR_MISS_FIELDS:
            misses.append(NearMiss(rule, tuple(reason(rule, packet, f) for f in failed)))
    return Explanation(verdict, tuple(misses))


def _collapse(failed: list[str], packet: Packet) -> list[str]:
    """Drops the L4 fields a wrong protocol already explains (a udp packet has no TCP flags)."""
    if "protocol" not in failed:
        return failed
    missing = {
        "source_port": packet.sport is None,
        "destination_port": packet.dport is None,
        "tcp_flags": packet.tcp_flags is None,
        "icmp_type": packet.icmp_type is None,
    }
    return [f for f in failed if not missing.get(f, False)]


def protocol_name(number: int | None) -> str:
    return _PROTOCOL_NAMES.get(number, f"protocol {number}") if number is not None else "none"


def address_text(family: Family | None, address: int | None) -> str:
    if family is None or address is None:
        return "?"
    if family is Family.IPV4:
        return str(ipaddress.IPv4Address(address))
    return str(ipaddress.IPv6Address(address))


def flags_text(bits: int) -> str:
    names = [name for name, bit in TCP_FLAGS.items() if bits & bit]
    return ",".join(names) if names else "none"


def rule_flags_text(rule: Rule) -> str:
    words = [n for n, bit in TCP_FLAGS.items() if rule.tcp_flags_set & bit]
    words += ["!" + n for n, bit in TCP_FLAGS.items() if rule.tcp_flags_clear & bit]
    return ",".join(words)


def _listing(items: Sequence[object]) -> str:
    shown = ", ".join(str(i) for i in items[:_LIST_LIMIT])
    more = len(items) - _LIST_LIMIT
    return f"{shown} and {more} more" if more > 0 else shown


def reason(rule: Rule, packet: Packet, field: str) -> str:
    """Why `packet` fails `field` of `rule`, in the policy author's words."""
    proto = protocol_name(packet.protocol)
    if field == "interface":
        return _interface_reason(rule, packet.interface)
    if field == "state":
        return _state_reason(rule, packet)
    if field == "protocol":
        return f"protocol {proto} != {rule.protocol.value}"
    if field == "source":
        src = address_text(packet.family, packet.src)
        return f"source {src} not in {_listing(rule.sources)}"
    if field == "destination":
        dst = address_text(packet.family, packet.dst)
        return f"destination {dst} not in {_listing(rule.destinations)}"
    if field == "fragment":
        return "a non-first fragment has no ports, TCP flags or ICMP type to match"
    if field in ("source_port", "destination_port"):
        short, port, ranges = (
            ("sport", packet.sport, rule.source_ports)
            if field == "source_port"
            else ("dport", packet.dport, rule.destination_ports)
        )
        if port is None:
            return f"the rule matches {short} but the packet is {proto}, which has no ports"
        return f"{short} {port} not in {_listing(ranges)}"
    if field == "tcp_flags":
        if packet.tcp_flags is None:
            return f"the rule matches TCP flags but the packet is {proto}"
        return f"TCP flags {flags_text(packet.tcp_flags)} do not satisfy {rule_flags_text(rule)}"
    if packet.icmp_type is None:
        return f"the rule matches ICMP types but the packet is {proto}"
    return f"ICMP type {packet.icmp_type} not in {_listing(rule.icmp_types)}"


def _interface_reason(rule: Rule, name: str | None) -> str:
    listed = [*rule.interfaces, *("!" + g for g in rule.not_interfaces)]
    if name is None:
        return f"the ingress interface is not known, and the rule needs {_listing(listed)}"
    return f"interface {name} does not pass {_listing(listed)}"


def state_names(bits: int) -> list[str]:
    """The names of CT_STATES bits, in the order the language lists them."""
    return [name for name in ("new", "established", "related", "invalid") if bits & CT_STATES[name]]


def _state_reason(rule: Rule, packet: Packet) -> str:
    wanted = _listing(state_names(rule.ct_states))
    if packet.ct_state is None:
        return f"the packet is untracked ({untracked_why(packet)}), and the rule needs {wanted}"
    return f"state {packet.ct_state} not in {wanted}"


def untracked_why(packet: Packet) -> str:
    """Why an IP packet has no connection state, in a few words."""
    if packet.non_first_fragment:
        return "a non-first fragment"
    if packet.icmp_type is not None:
        return "an ICMP message that is not an error quoting a TCP or UDP packet"
    return f"{protocol_name(packet.protocol)} has no connection fwc can look up"


def describe_packet(packet: Packet) -> str:
    """One line: `tcp 203.0.113.9:12345 -> 192.0.2.2:22 flags SYN vlan 100`."""
    if packet.klass != "ip":
        return f"{packet.klass} frame of {packet.length} bytes: {packet.reason}"
    src = address_text(packet.family, packet.src)
    dst = address_text(packet.family, packet.dst)
    if packet.family is Family.IPV6:
        src, dst = f"[{src}]", f"[{dst}]"
    if packet.sport is not None:
        src, dst = f"{src}:{packet.sport}", f"{dst}:{packet.dport}"
    words = [protocol_name(packet.protocol), src, "->", dst]
    if packet.tcp_flags is not None:
        words += ["flags", flags_text(packet.tcp_flags)]
    if packet.icmp_type is not None:
        words += ["type", str(packet.icmp_type)]
    if packet.fragment != "none":
        words.append(f"({packet.fragment} fragment)")
    if packet.inner_protocol is not None:
        inner_src = address_text(packet.family, packet.inner_src)
        inner_dst = address_text(packet.family, packet.inner_dst)
        if packet.family is Family.IPV6:
            inner_src, inner_dst = f"[{inner_src}]", f"[{inner_dst}]"
        words += [
            "quoting",
            protocol_name(packet.inner_protocol),
            f"{inner_src}:{packet.inner_sport}",
            "->",
            f"{inner_dst}:{packet.inner_dport}",
        ]
    if packet.vlans:
        words += ["vlan", "/".join(str(v) for v in packet.vlans)]
    if packet.interface is not None:
        words += ["on", packet.interface]
    return " ".join(words)
