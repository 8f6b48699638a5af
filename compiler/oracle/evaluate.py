"""The reference evaluator: the verdict POLICY.md and docs/semantics.md give one frame.

It is the oracle every compiled program is tested against, so it stays a direct
reading of the two documents: parse, then try the rules in order.
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass, replace

from fwc.compiler.oracle.packet import Packet, parse
from fwc.compiler.oracle.ratelimit import RateLimiter, gcra
from fwc.compiler.policy.ir import (
    CT_STATES,
    IPPROTO_ICMP,
    IPPROTO_ICMPV6,
    IPPROTO_TCP,
    IPPROTO_UDP,
    Action,
    AddressRange,
    Policy,
    PortRange,
    Rule,
)

XDP_DROP = 1
XDP_PASS = 2


@dataclass(frozen=True)
class Verdict:
    """What happens to one frame, and which counter slot (docs/artifact.md) it lands in."""

    xdp_action: int  # XDP_DROP or XDP_PASS
    rule: Rule | None  # the deciding rule, None for default, malformed and non_ip
    klass: str  # "rule" | "default" | "malformed" | "non_ip"
    counter_slot: int
    would_drop: bool  # dry run only: the verdict would have dropped, the frame passed
    packet: Packet

    @property
    def decided_by(self) -> str:
        """The deciding rule's name, or "default", "malformed" or "non_ip"."""
        return self.rule.name if self.rule is not None else self.klass


def evaluate(
    policy: Policy,
    frame: bytes,
    dry_run: bool = False,
    buckets: RateLimiter | None = None,
    now_ns: int | None = None,
    interface: str | None = None,
    ct_state: str = "new",
) -> Verdict:
    """The verdict for `frame` arriving on the interface named `interface` (None: one the
    program does not know, which matches no pattern); never raises.

    `ct_state` is the kernel's answer for the packet's connection (new, established, related
    or invalid): the packet's state when it is tracked; an untracked one has none.

    A `rate_limit` rule's packet takes a token from `buckets` at time `now_ns` and
    is dropped when none is left; with no buckets (or no clock) it passes, as from
    a bucket that still holds a token.
    """
    packet = parse(frame)
    if interface is not None:
        packet = replace(packet, interface=interface)
    if packet.tracked:
        packet = replace(packet, ct_state=ct_state)
    n = len(policy.rules)
    if packet.klass == "non_ip":
        return Verdict(XDP_PASS, None, "non_ip", n + 2, False, packet)
    if packet.klass == "malformed":
        return _verdict(policy.default_action, None, "malformed", n + 1, packet, dry_run)
    for rule in policy.rules:
        if not failed_fields(rule, packet):
            action = rule.action
            if action is Action.RATE_LIMIT and not _takes_token(rule, packet, buckets, now_ns):
                action = Action.DENY
            return _verdict(action, rule, "rule", rule.id, packet, dry_run)
    return _verdict(policy.default_action, None, "default", n, packet, dry_run)


def _verdict(
    action: Action, rule: Rule | None, klass: str, slot: int, packet: Packet, dry_run: bool
) -> Verdict:
    drops = action is Action.DENY
    if dry_run and drops:
        return Verdict(XDP_PASS, rule, klass, slot, True, packet)
    return Verdict(XDP_DROP if drops else XDP_PASS, rule, klass, slot, False, packet)


def _takes_token(
    rule: Rule, packet: Packet, buckets: RateLimiter | None, now_ns: int | None
) -> bool:
    params = gcra(rule)
    if buckets is None or now_ns is None or params is None:
        return True
    assert packet.family is not None and packet.src is not None
    return buckets.take((rule.id, packet.family, packet.src), params, now_ns)


def failed_fields(rule: Rule, packet: Packet) -> list[str]:
    """The fields of `rule` that `packet` (an IP packet) does not match; empty means a match.

    Field names: interface, state, protocol, source, destination, fragment, source_port,
    destination_port, tcp_flags, icmp_type.
    """
    failed: list[str] = []
    if rule.has_interfaces and not interface_passes(rule, packet.interface):
        failed.append("interface")
    if rule.has_state and not state_passes(rule, packet.ct_state):
        failed.append("state")
    number = rule.protocol.number
    if number is not None and packet.protocol != number:
        failed.append("protocol")
    if rule.sources and not _in_addresses(packet, packet.src, rule.sources):
        failed.append("source")
    if rule.destinations and not _in_addresses(packet, packet.dst, rule.destinations):
        failed.append("destination")
    if rule.needs_l4 and packet.non_first_fragment:
        failed.append("fragment")
        return failed
    is_tcp_or_udp = packet.protocol in (IPPROTO_TCP, IPPROTO_UDP)
    if rule.source_ports and not (is_tcp_or_udp and _in_ports(packet.sport, rule.source_ports)):
        failed.append("source_port")
    if rule.destination_ports and not (
        is_tcp_or_udp and _in_ports(packet.dport, rule.destination_ports)
    ):
        failed.append("destination_port")
    if rule.has_tcp_flags and not (
        packet.protocol == IPPROTO_TCP
        and packet.tcp_flags is not None
        and packet.tcp_flags & rule.tcp_flags_set == rule.tcp_flags_set
        and packet.tcp_flags & rule.tcp_flags_clear == 0
    ):
        failed.append("tcp_flags")
    if rule.icmp_types and not (
        packet.protocol in (IPPROTO_ICMP, IPPROTO_ICMPV6) and packet.icmp_type in rule.icmp_types
    ):
        failed.append("icmp_type")
    return failed


def interface_passes(rule: Rule, name: str | None) -> bool:
    """Whether an ingress interface passes the rule's interface match: it matches one of
    `interfaces` (if any) and none of `not_interfaces`; an unknown one matches no pattern."""
    if name is None:
        return not rule.interfaces
    if rule.interfaces and not any(fnmatch.fnmatchcase(name, g) for g in rule.interfaces):
        return False
    return not any(fnmatch.fnmatchcase(name, g) for g in rule.not_interfaces)


def state_passes(rule: Rule, ct_state: str | None) -> bool:
    """Whether a connection state (None: untracked) is one of the rule's `state`."""
    return ct_state is not None and bool(CT_STATES.get(ct_state, 0) & rule.ct_states)


def _in_addresses(packet: Packet, address: int | None, ranges: tuple[AddressRange, ...]) -> bool:
    family = packet.family
    return (
        family is not None
        and address is not None
        and any(r.contains(family, address) for r in ranges)
    )


def _in_ports(port: int | None, ranges: tuple[PortRange, ...]) -> bool:
    return port is not None and any(r.contains(port) for r in ranges)
