"""Realistic bench policies at N rules, and traffic hitting early rules, late rules, the default.

`make_policy_yaml(n, seed)` is deterministic: the same arguments give the same text.
"""

from __future__ import annotations

import ipaddress
import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TypeVar

from fwc.compiler.oracle.frames import PacketFields, build_frame
from fwc.compiler.policy.ir import (
    IPPROTO_ICMP,
    IPPROTO_ICMPV6,
    IPPROTO_TCP,
    IPPROTO_UDP,
    TCP_FLAGS,
    Action,
    AddressRange,
    Family,
    Policy,
    Rule,
)
from fwc.compiler.policy.normalize import normalize
from fwc.compiler.policy.source import load_bytes

LABELS = ("first", "late", "default")
T = TypeVar("T")

# Rules draw their networks from these pools; default traffic comes from outside all of them.
_V4_POOLS = (
    ipaddress.IPv4Network("10.0.0.0/8"),
    ipaddress.IPv4Network("172.16.0.0/12"),
    ipaddress.IPv4Network("100.64.0.0/10"),
    ipaddress.IPv4Network("198.18.0.0/15"),
)
_V6_POOLS = (ipaddress.IPv6Network("2001:db8::/32"), ipaddress.IPv6Network("fd00::/8"))
_DEFAULT_V4 = ipaddress.IPv4Network("203.0.113.0/24")
_DEFAULT_V6 = ipaddress.IPv6Network("3fff:ffff::/32")
# Ports rules never name, so default traffic aimed here matches nothing.
_FREE_PORTS = range(61000, 61999)

# (prefix length range, weight): mostly hosts and /24s, some wider aggregates.
_V4_PREFIXES = (((32, 32), 30), ((24, 24), 30), ((25, 31), 10), ((16, 23), 25), ((12, 15), 5))
_V6_PREFIXES = (((128, 128), 20), ((64, 64), 40), ((48, 63), 25), ((36, 47), 15))

_SERVICE_PORTS = (22, 25, 53, 80, 110, 123, 143, 443, 465, 587, 993, 995, 3306, 5432, 6379, 8080)
_KINDS = (
    ("deny_net", 25),
    ("allow_tcp", 30),
    ("allow_udp", 15),
    ("deny_syn", 10),
    ("allow_icmp", 10),
    ("deny_ports", 10),
)


class _Generator:
    """One policy's random choices; keeps every network distinct."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.used: set[str] = set()

    def weighted(self, options: Sequence[tuple[T, int]]) -> T:
        return self.rng.choices([o for o, _ in options], [w for _, w in options])[0]

    def cidr(self, family: Family) -> str:
        while True:
            if family is Family.IPV4:
                lo, hi = self.weighted(_V4_PREFIXES)
                pool: ipaddress.IPv4Network | ipaddress.IPv6Network = self.rng.choice(_V4_POOLS)
            else:
                lo, hi = self.weighted(_V6_PREFIXES)
                pool = self.rng.choice(_V6_POOLS)
            plen = max(self.rng.randint(lo, hi), pool.prefixlen)
            width = family.width
            host = self.rng.getrandbits(width - pool.prefixlen)
            address = int(pool.network_address) | host
            network = address & ~((1 << (width - plen)) - 1)
            text = str(ipaddress.ip_network((network, plen)))
            if text not in self.used:
                self.used.add(text)
                return text

    def cidrs(self, family: Family | None = None) -> list[str]:
        count = self.rng.choices((1, 2, 3), (60, 25, 15))[0]
        out = []
        for _ in range(count):
            fam = family or (Family.IPV4 if self.rng.random() < 0.65 else Family.IPV6)
            out.append(self.cidr(fam))
        return out

    def ports(self) -> list[int | str]:
        count = self.rng.choices((1, 2, 3), (60, 25, 15))[0]
        out: list[int | str] = []
        for _ in range(count):
            if self.rng.random() < 0.6:
                out.append(self.rng.choice(_SERVICE_PORTS))
            else:
                lo = self.rng.randint(1024, 59000)
                out.append(f"{lo}-{lo + self.rng.randint(1, 999)}")
        return sorted(set(out), key=str)

    def rule(self, index: int) -> dict[str, object]:
        kind = self.weighted(_KINDS)
        rule: dict[str, object] = {"name": f"r{index:05d}_{kind}", "priority": 10 + index}
        if kind == "deny_net":
            rule.update(action="deny", source_cidrs=self.cidrs())
        elif kind == "allow_tcp":
            rule.update(
                action="allow",
                protocol="tcp",
                source_cidrs=self.cidrs(),
                destination_ports=self.ports(),
            )
            if self.rng.random() < 0.3:
                fam = Family.IPV4 if self.rng.random() < 0.7 else Family.IPV6
                rule["destination_cidrs"] = [self.cidr(fam)]
                rule["source_cidrs"] = self.cidrs(fam)
        elif kind == "allow_udp":
            key = "source_ports" if self.rng.random() < 0.2 else "destination_ports"
            rule.update(
                action="allow", protocol="udp", source_cidrs=self.cidrs(), **{key: self.ports()}
            )
        elif kind == "deny_syn":
            rule.update(
                action="deny",
                protocol="tcp",
                source_cidrs=self.cidrs(),
                destination_ports=self.ports(),
                tcp_flags="SYN,!ACK",
            )
        elif kind == "allow_icmp":
            if self.rng.random() < 0.6:
                rule.update(
                    protocol="icmp", source_cidrs=self.cidrs(Family.IPV4), icmp_types=[0, 3, 8, 11]
                )
            else:
                rule.update(
                    protocol="icmpv6",
                    source_cidrs=self.cidrs(Family.IPV6),
                    icmp_types=[1, 128, 129],
                )
            rule["action"] = "allow"
        else:
            rule.update(
                action="deny",
                protocol=self.rng.choice(("tcp", "udp")),
                source_cidrs=self.cidrs(),
                destination_ports=self.ports(),
            )
        return rule


def make_policy_yaml(n_rules: int, seed: int = 1) -> str:
    """A deny-by-default policy of `n_rules` rules over distinct networks of both families."""
    gen = _Generator(seed)
    lines = [
        f"# Generated by bench/policies.py: {n_rules} rules, seed {seed}.",
        "version: 1",
        f"name: bench-{n_rules}-{seed}",
        "default_action: deny",
        "rules:",
    ]
    for i in range(n_rules):
        lines.extend(_rule_yaml(gen.rule(i)))
    return "\n".join(lines) + "\n"


def _rule_yaml(rule: dict[str, object]) -> list[str]:
    out = []
    for i, (key, value) in enumerate(rule.items()):
        prefix = "  - " if i == 0 else "    "
        if isinstance(value, list):
            text = "[" + ", ".join(f'"{v}"' if isinstance(v, str) else str(v) for v in value) + "]"
        elif isinstance(value, str) and key in ("tcp_flags",):
            text = f'"{value}"'
        else:
            text = str(value)
        out.append(f"{prefix}{key}: {text}")
    return out


def load_policy(text: str, file: str = "bench.yaml") -> Policy:
    """The IR of a policy text; raises ValueError naming the first error."""
    doc, findings = load_bytes(text.encode(), file)
    policy = None
    if doc is not None:
        policy, more = normalize(doc)
        findings += more
    errors = [f for f in findings if f.severity.value == "error"]
    if policy is None or errors:
        first = errors[0] if errors else findings[0]
        raise ValueError(f"{first.location.file}:{first.location.line}: {first.message}")
    return policy


# ---- traffic ------------------------------------------------------------------------


@dataclass(frozen=True)
class Packet:
    """A generated packet: its label, its fields, the rule it hits (None: the default)."""

    label: str
    fields: PacketFields
    rule: Rule | None

    @property
    def frame(self) -> bytes:
        return build_frame(self.fields)


def first_match(policy: Policy, fields: PacketFields) -> Rule | None:
    """The first rule matching an unfragmented packet without VLAN tags or extension headers."""
    for rule in policy.rules:
        if _matches(rule, fields):
            return rule
    return None


def _in(ranges: Sequence[AddressRange], family: Family, address: int) -> bool:
    return not ranges or any(r.contains(family, address) for r in ranges)


def _matches(rule: Rule, p: PacketFields) -> bool:
    number = rule.protocol.number
    if number is not None and number != p.protocol:
        return False
    if not _in(rule.sources, p.family, p.src) or not _in(rule.destinations, p.family, p.dst):
        return False
    if rule.has_ports:
        if p.protocol not in (IPPROTO_TCP, IPPROTO_UDP):
            return False
        if rule.source_ports and not any(r.contains(p.sport) for r in rule.source_ports):
            return False
        if rule.destination_ports and not any(r.contains(p.dport) for r in rule.destination_ports):
            return False
    if rule.has_tcp_flags:
        if p.protocol != IPPROTO_TCP:
            return False
        if p.tcp_flags & rule.tcp_flags_set != rule.tcp_flags_set:
            return False
        if p.tcp_flags & rule.tcp_flags_clear:
            return False
    return not rule.icmp_types or (
        p.protocol in (IPPROTO_ICMP, IPPROTO_ICMPV6) and p.icmp_type in rule.icmp_types
    )


def _address_in(rng: random.Random, ranges: Sequence[AddressRange], family: Family) -> int:
    candidates = [r for r in ranges if r.family is family]
    if not candidates:
        pool = _V4_POOLS[0] if family is Family.IPV4 else _V6_POOLS[0]
        return int(pool.network_address) | rng.getrandbits(family.width - pool.prefixlen)
    r = rng.choice(candidates)
    return r.first + rng.randint(0, r.last - r.first)


def _packet_for(rng: random.Random, rule: Rule) -> PacketFields:
    """Random fields inside every constraint of `rule` (it may still hit an earlier rule)."""
    families = {r.family for r in rule.sources + rule.destinations}
    if rule.protocol.number == IPPROTO_ICMPV6:
        families &= {Family.IPV6} if families else set()
        families = families or {Family.IPV6}
    elif rule.protocol.number == IPPROTO_ICMP:
        families = (families & {Family.IPV4}) or {Family.IPV4}
    family = rng.choice(sorted(families or {Family.IPV4, Family.IPV6}))
    proto = rule.protocol.number or rng.choice((IPPROTO_TCP, IPPROTO_UDP))
    sport = rng.randint(1024, 60999)
    dport = rng.choice(_SERVICE_PORTS)
    if rule.source_ports:
        r = rng.choice(rule.source_ports)
        sport = rng.randint(r.first, r.last)
    if rule.destination_ports:
        r = rng.choice(rule.destination_ports)
        dport = rng.randint(r.first, r.last)
    flags = TCP_FLAGS["ACK"] | TCP_FLAGS["PSH"]
    if rule.has_tcp_flags:
        flags = rule.tcp_flags_set | (rng.getrandbits(8) & ~rule.tcp_flags_clear & 0xFF)
    icmp_type = (
        rng.choice(rule.icmp_types) if rule.icmp_types else (8 if family is Family.IPV4 else 128)
    )
    return PacketFields(
        family=family,
        protocol=proto,
        src=_address_in(rng, rule.sources, family),
        dst=_address_in(rng, rule.destinations, family),
        sport=sport,
        dport=dport,
        tcp_flags=flags,
        icmp_type=icmp_type,
        payload_len=rng.choice((18, 64, 200)),
    )


def _default_packet(rng: random.Random) -> PacketFields:
    family = Family.IPV4 if rng.random() < 0.65 else Family.IPV6
    net: ipaddress.IPv4Network | ipaddress.IPv6Network = (
        _DEFAULT_V4 if family is Family.IPV4 else _DEFAULT_V6
    )
    width = family.width

    def addr() -> int:
        return int(net.network_address) | rng.getrandbits(width - net.prefixlen)

    return PacketFields(
        family=family,
        protocol=rng.choice((IPPROTO_TCP, IPPROTO_UDP)),
        src=addr(),
        dst=addr(),
        sport=rng.choice(_FREE_PORTS),
        dport=rng.choice(_FREE_PORTS),
        tcp_flags=TCP_FLAGS["SYN"],
        payload_len=rng.choice((18, 64, 200)),
    )


def make_packets(policy: Policy, seed: int = 1, per_label: int = 8) -> list[Packet]:
    """`per_label` packets each: hitting the first rules, the last tenth of rules, and no rule.

    "first" and "late" packets hit allow and deny rules alike where the policy has both.
    """
    rng = random.Random(seed)
    rules = policy.rules
    n = len(rules)
    groups = {
        "first": list(rules[: max(2, min(8, n))]),
        "late": list(rules[n - max(2, n // 10) :]) if n > 2 else list(rules),
    }
    out: list[Packet] = []
    for label, pool in groups.items():
        made = 0
        attempts = 0
        while made < per_label and attempts < per_label * 200:
            attempts += 1
            # Alternate allow and deny targets so both verdicts appear in every label.
            want = Action.ALLOW if made % 2 == 0 else Action.DENY
            choices = [r for r in pool if r.action is want] or pool
            rule = rng.choice(choices)
            fields = _packet_for(rng, rule)
            if first_match(policy, fields) is rule:
                out.append(Packet(label, fields, rule))
                made += 1
    made = 0
    while made < per_label:
        fields = _default_packet(rng)
        if first_match(policy, fields) is None:
            out.append(Packet("default", fields, None))
            made += 1
    return out


def make_traffic(policy: Policy, seed: int = 1, per_label: int = 8) -> list[tuple[str, bytes]]:
    """(label, Ethernet frame) pairs, labels "first", "late" and "default"."""
    return [(p.label, p.frame) for p in make_packets(policy, seed, per_label)]


def verdict(policy: Policy, packet: Packet) -> Action:
    """ALLOW or DENY for a generated packet (bench policies have no rate limits)."""
    return packet.rule.action if packet.rule is not None else policy.default_action
