"""The expert netfilter baselines of a bench policy, as the text their tools load.

Three designs, each exact for the bench policies (first match, every field):
`ipset`: iptables rules over `hash:net`, `hash:net,port` and `hash:net,port,net` sets
in first-match layers (bench/layers.py); `nft-vmap`: nftables concatenated interval
verdict maps in first-match layers; `nft-seg`: one interval map on the source
address into per-segment chains holding, in order, only the rules covering that
segment. A rule a design cannot express exactly stays a plain rule at its place.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TypeVar

from layers import levels, merged_ports, normal_destinations, normal_sources
from ruleset import CHAIN, iptables_lines, nft_lines

from fwc.compiler.policy.ir import TCP_FLAGS, Action, AddressRange, Family, Policy, Rule

TABLE = "fwc_bench"
T = TypeVar("T")
_PROTO_NAMES = {6: "tcp", 17: "udp"}


@dataclass(frozen=True)
class Baseline:
    """What one design loads: ipset-restore, iptables-restore (per family) or nft -f text."""

    name: str
    summary: str  # levels, lookups, entries, plain rules: printed by the bench
    ipset: str = ""
    iptables: tuple[tuple[Family, str], ...] = ()
    nft: str = ""


# ---- shapes: which lookup key a rule fits ---------------------------------------------


def shape(rule: Rule) -> str:
    """The lookup key a rule's packets can be found by, or "plain".

    src: source only; src.dport / src.sport: source, protocol and one port field;
    src.dst.dport: both addresses, protocol and destination port; src.icmp: source and
    ICMP type (nft only: ipset's ICMP entries also fix the code).
    """
    if not rule.sources or rule.action not in (Action.ALLOW, Action.DENY):
        return "plain"
    if rule.icmp_types:
        if rule.protocol.number in (1, 58) and not rule.destinations:
            return "src.icmp"
        return "plain"
    protos = _l4_protocols(rule)
    if rule.source_ports and rule.destination_ports:
        return "plain"
    if rule.destination_ports and protos:
        return "src.dst.dport" if rule.destinations else "src.dport"
    if rule.destinations:
        return "plain"
    if rule.source_ports and protos:
        return "src.sport"
    if rule.protocol.number is None and not rule.has_tcp_flags:
        return "src"
    return "plain"


def _l4_protocols(rule: Rule) -> list[int]:
    number = rule.protocol.number
    if number is None:
        return [6, 17] if rule.has_ports else []
    return [number] if number in (6, 17) else []


def _flags_key(rule: Rule) -> tuple[int, int]:
    return rule.tcp_flags_set, rule.tcp_flags_clear


def _different_verdict(a: Rule, b: Rule) -> bool:
    return a.action is not b.action


def _nets(ranges: Sequence[AddressRange], family: Family) -> list[AddressRange]:
    return [r for r in ranges if r.family is family]


def _flag_names(bits: int, sep: str = ",") -> str:
    return sep.join(name for name, bit in TCP_FLAGS.items() if bits & bit)


@dataclass
class _Group:
    """Rules of one level sharing a lookup: same family, shape and TCP-flag test."""

    family: Family
    shape: str
    flags: tuple[int, int]
    rules: list[Rule]


def _groups(
    rules: Sequence[Rule], level_of: Sequence[int], ipset: bool
) -> list[list[_Group | Rule]]:
    """Per level, in order: the lookups (groups) and the plain rules of that level."""
    out: list[list[_Group | Rule]] = [[] for _ in range(max(level_of, default=-1) + 1)]
    found: dict[tuple[int, Family, str, tuple[int, int], Action], _Group] = {}
    for rule, level in zip(rules, level_of, strict=True):
        kind = shape(rule)
        if kind == "plain" or (ipset and kind in _IPSET_PLAIN):
            out[level].append(rule)
            continue
        for family in (Family.IPV4, Family.IPV6):
            if not _nets(rule.sources, family):
                continue
            if rule.destinations and not _nets(rule.destinations, family):
                continue
            if kind == "src.icmp" and rule.protocol.number != (1 if family is Family.IPV4 else 58):
                continue
            # ipset sets give one verdict; nft maps carry it in the element.
            action = rule.action if ipset else Action.ALLOW
            key = (level, family, kind, _flags_key(rule), action)
            group = found.get(key)
            if group is None:
                group = found[key] = _Group(family, kind, _flags_key(rule), [])
                out[level].append(group)
            group.rules.append(rule)
    return out


def _count(layered: Sequence[Sequence[_Group | Rule]]) -> tuple[int, int]:
    lookups = sum(isinstance(x, _Group) for level in layered for x in level)
    plain = len({x.id for level in layered for x in level if isinstance(x, Rule)})
    return lookups, plain


# ---- iptables + ipset -----------------------------------------------------------------

# ICMP entries in ipset fix the code too; hash:net,port,net is not in every kernel
# (CONFIG_IP_SET_HASH_NETPORTNET), and not in the bench machine's.
_IPSET_PLAIN = ("src.icmp", "src.dst.dport")
_IPSET_TYPE = {"src": "hash:net", "src.dport": "hash:net,port", "src.sport": "hash:net,port"}
_IPSET_DIRS = {"src": "src", "src.dport": "src,dst", "src.sport": "src,src"}


def _ipset_entries(group: _Group) -> list[str]:
    out = []
    for rule in group.rules:
        srcs = [str(n) for n in _nets(normal_sources(rule), group.family)]
        if group.shape == "src":
            out += srcs
            continue
        ports = merged_ports(
            rule.destination_ports if group.shape != "src.sport" else rule.source_ports
        )
        for proto in _l4_protocols(rule):
            for p in ports:
                port = f"{_PROTO_NAMES[proto]}:{p.first}" + (
                    f"-{p.last}" if p.last != p.first else ""
                )
                out += [f"{s},{port}" for s in srcs]
    return out


def _expanded(entry: str) -> int:
    port = entry.rpartition(":")[2] if "," in entry else "0"
    first, _, last = port.partition("-")
    return int(last) - int(first) + 1 if last else 1


def ipset_baseline(policy: Policy, interface: str) -> Baseline:
    """iptables (raw PREROUTING) over ipsets, in first-match layers."""
    rules = policy.rules
    layered = _groups(rules, levels(rules, _different_verdict), ipset=True)
    sets: list[str] = []
    chains: dict[Family, list[str]] = {Family.IPV4: [], Family.IPV6: []}
    entries = 0
    for level_no, level in enumerate(layered):
        for k, item in enumerate(level):
            if isinstance(item, Rule):
                for family in chains:
                    chains[family] += iptables_lines(item, family)
                continue
            fam = "4" if item.family is Family.IPV4 else "6"
            name = f"fwc{level_no}_{k}_{fam}"
            kind = "hash:net,port,net" if item.shape == "src.dst.dport" else _IPSET_TYPE[item.shape]
            dirs = "src,dst,dst" if item.shape == "src.dst.dport" else _IPSET_DIRS[item.shape]
            elems = _ipset_entries(item)
            # the kernel stores a port range as one entry per port
            size = sum(_expanded(e) for e in elems)
            entries += size
            set_family = "inet" if item.family is Family.IPV4 else "inet6"
            sets.append(
                f"create {name} {kind} family {set_family} hashsize 1024 "
                f"maxelem {max(65536, 2 * size)}"
            )
            sets += [f"add {name} {e}" for e in elems]
            match = ["-A", CHAIN, "-m", "set", "--match-set", name, dirs]
            set_bits, clear_bits = item.flags
            if set_bits or clear_bits:
                mask = _flag_names(set_bits | clear_bits)
                match += ["-p", "tcp", "-m", "tcp", "--tcp-flags", mask, _flag_names(set_bits)]
            verdict = "ACCEPT" if item.rules[0].action is Action.ALLOW else "DROP"
            chains[item.family].append(" ".join([*match, "-j", verdict]))
    default = "ACCEPT" if policy.default_action is Action.ALLOW else "DROP"
    restore = tuple(
        (
            family,
            "\n".join(
                [
                    "*raw",
                    ":PREROUTING ACCEPT [0:0]",
                    ":OUTPUT ACCEPT [0:0]",
                    f":{CHAIN} - [0:0]",
                    f"-A PREROUTING -i {interface} -j {CHAIN}",
                    *lines,
                    f"-A {CHAIN} -j {default}",
                    "COMMIT",
                ]
            )
            + "\n",
        )
        for family, lines in chains.items()
    )
    lookups, plain = _count(layered)
    summary = (
        f"{len(layered)} layers, {lookups} set matches, {entries} set entries, "
        f"{plain} plain rules (ICMP types, destination networks)"
    )
    return Baseline("ipset", summary, ipset="\n".join(sets) + "\n", iptables=restore)


# ---- nftables: concatenated interval verdict maps -------------------------------------

_NFT_KEY = {
    "src": ("{ip} saddr", "{addr}"),
    "src.dport": ("{ip} saddr . meta l4proto . th dport", "{addr} . inet_proto . inet_service"),
    "src.sport": ("{ip} saddr . meta l4proto . th sport", "{addr} . inet_proto . inet_service"),
    "src.dst.dport": (
        "{ip} saddr . {ip} daddr . meta l4proto . th dport",
        "{addr} . {addr} . inet_proto . inet_service",
    ),
    "src.icmp": ("{ip} saddr . {icmp} type", "{addr} . {icmp}_type"),
}


def _nft_elements(group: _Group) -> list[str]:
    out = []
    for rule in group.rules:
        verdict = "accept" if rule.action is Action.ALLOW else "drop"
        srcs = [str(n) for n in _nets(normal_sources(rule), group.family)]
        if group.shape == "src":
            out += [f"{s} : {verdict}" for s in srcs]
            continue
        if group.shape == "src.icmp":
            out += [f"{s} . {t} : {verdict}" for s in srcs for t in sorted(set(rule.icmp_types))]
            continue
        ports = merged_ports(
            rule.destination_ports if group.shape != "src.sport" else rule.source_ports
        )
        dsts = [str(n) for n in _nets(normal_destinations(rule), group.family)]
        for proto in _l4_protocols(rule):
            for p in ports:
                tail = f"{_PROTO_NAMES[proto]} . {p}"
                if dsts:
                    out += [f"{s} . {d} . {tail} : {verdict}" for s in srcs for d in dsts]
                else:
                    out += [f"{s} . {tail} : {verdict}" for s in srcs]
    return out


def _nft_head(interface: str) -> list[str]:
    return [
        f"table netdev {TABLE} {{",
        "\tchain ingress {",
        f'\t\ttype filter hook ingress device "{interface}" priority 0; policy accept;',
        # fwc never filters non-IP frames; iptables never sees them.
        "\t\tmeta protocol != { ip, ip6 } accept",
    ]


def _same_lookup(a: Rule, b: Rule) -> bool:
    """nft refuses overlapping elements in one interval map: such rules take two levels."""
    return a.action is not b.action or (
        shape(a) == shape(b) and shape(a) != "plain" and _flags_key(a) == _flags_key(b)
    )


def nft_vmap_baseline(policy: Policy, interface: str) -> Baseline:
    """A netdev ingress chain of concatenated interval verdict maps, in first-match layers."""
    rules = policy.rules
    layered = _groups(rules, levels(rules, _same_lookup), ipset=False)
    maps: list[str] = []
    chain: list[str] = []
    entries = 0
    for level_no, level in enumerate(layered):
        for k, item in enumerate(level):
            if isinstance(item, Rule):
                chain += [f"\t\t{line}" for line in nft_lines(item)]
                continue
            ip = "ip" if item.family is Family.IPV4 else "ip6"
            addr = "ipv4_addr" if item.family is Family.IPV4 else "ipv6_addr"
            icmp = "icmp" if item.family is Family.IPV4 else "icmpv6"
            expr, key_type = (t.format(ip=ip, addr=addr, icmp=icmp) for t in _NFT_KEY[item.shape])
            name = f"m{level_no}_{k}"
            elems = _nft_elements(item)
            entries += len(elems)
            maps += [
                f"\tmap {name} {{",
                f"\t\ttype {key_type} : verdict",
                "\t\tflags interval",
                "\t\telements = { " + ",\n\t\t\t".join(elems) + " }",
                "\t}",
            ]
            prefix = ""
            set_bits, clear_bits = item.flags
            if set_bits or clear_bits:
                mask = _flag_names(set_bits | clear_bits, "|").lower()
                prefix = f"tcp flags & ({mask}) == {_flag_names(set_bits, '|').lower() or '0'} "
            chain.append(f"\t\t{prefix}{expr} vmap @{name}")
    default = "accept" if policy.default_action is Action.ALLOW else "drop"
    head = _nft_head(interface)
    text = [head[0], *maps, *head[1:], *chain, f"\t\t{default}", "\t}", "}"]
    lookups, plain = _count(layered)
    summary = (
        f"{len(layered)} layers, {lookups} map lookups, {entries} map elements, {plain} plain rules"
    )
    return Baseline("nft-vmap", summary, nft="\n".join(text) + "\n")


# ---- nftables: source segments into per-segment chains --------------------------------


def _segments(rules: Sequence[Rule], family: Family) -> list[tuple[int, int, tuple[int, ...]]]:
    """(first, last, covering rule ids in order) for each stretch of `family`'s addresses."""
    events: dict[int, list[tuple[int, int]]] = {}
    for rule in rules:
        for net in _nets(normal_sources(rule), family):
            events.setdefault(net.first, []).append((1, rule.id))
            events.setdefault(net.last + 1, []).append((-1, rule.id))
    active: set[int] = set()
    out: list[tuple[int, int, tuple[int, ...]]] = []
    points = sorted(events)
    for point, after in itertools.pairwise(points):
        for delta, rid in events[point]:
            if delta > 0:
                active.add(rid)
            else:
                active.discard(rid)
        if active:
            out.append((point, after - 1, tuple(sorted(active))))
    return out


def _segment_rule(rule: Rule, family: Family) -> list[str]:
    """The rule's nft statements inside a chain only `family` packets from its sources reach."""
    if rule.destinations and not _nets(rule.destinations, family):
        return []
    if rule.protocol.number == (58 if family is Family.IPV4 else 1):
        return []
    # One statement per value: nft names every anonymous set by scanning the table's
    # sets, so tens of thousands of `{ ... }` take minutes (or hours) to load.
    lines = []
    for dst, sport, dport, icmp in itertools.product(
        _each(_nets(normal_destinations(rule), family)),
        _each(merged_ports(rule.source_ports)),
        _each(merged_ports(rule.destination_ports)),
        _each(sorted(set(rule.icmp_types))),
    ):
        single = dataclasses.replace(
            rule,
            sources=(),
            destinations=dst,
            source_ports=sport,
            destination_ports=dport,
            icmp_types=icmp,
        )
        lines += nft_lines(single)
    return lines


def _each(values: Sequence[T]) -> list[tuple[T, ...]]:
    """Each value alone, or one empty tuple (the field is not tested)."""
    return [(v,) for v in values] or [()]


def nft_segments_baseline(policy: Policy, interface: str) -> Baseline:
    """Per family, one interval map on the source address; each segment's chain holds the
    rules covering it, in order, without their source test."""
    rules = policy.rules
    default = "accept" if policy.default_action is Action.ALLOW else "drop"
    anywhere = [r for r in rules if not r.sources]
    chains: dict[tuple[Family, tuple[int, ...]], str] = {}
    body: list[str] = []
    maps: list[str] = []
    lookups: list[str] = []
    longest = 0
    for family in (Family.IPV4, Family.IPV6):
        elems = []
        for first, last, covering in _segments(rules, family):
            ids = tuple(sorted({*covering, *(r.id for r in anywhere)}))
            name = chains.get((family, ids))
            if name is None:
                name = chains[family, ids] = f"s{len(chains)}"
                lines = [ln for rid in ids for ln in _segment_rule(rules[rid], family)]
                longest = max(longest, len(lines))
                body += [f"\tchain {name} {{", *[f"\t\t{ln}" for ln in lines]]
                body += [f"\t\t{default}", "\t}"]
            lo, hi = _address(family, first), _address(family, last)
            elems.append(f"{lo}-{hi} : goto {name}" if lo != hi else f"{lo} : goto {name}")
        if not elems:
            continue
        ip, addr = ("ip", "ipv4_addr") if family is Family.IPV4 else ("ip6", "ipv6_addr")
        maps += [
            f"\tmap seg{family.value} {{",
            f"\t\ttype {addr} : verdict",
            "\t\tflags interval",
            "\t\telements = { " + ",\n\t\t\t".join(elems) + " }",
            "\t}",
        ]
        lookups.append(f"\t\t{ip} saddr vmap @seg{family.value}")
    head = _nft_head(interface)
    fallback = [f"\t\t{line}" for r in anywhere for line in nft_lines(r)]
    text = [head[0], *maps, *body, *head[1:], *lookups, *fallback, f"\t\t{default}", "\t}", "}"]
    summary = (
        f"{len(chains)} segment chains (longest {longest} statements), "
        f"{len(anywhere)} rules without sources in every chain"
    )
    return Baseline("nft-seg", summary, nft="\n".join(text) + "\n")


def _address(family: Family, value: int) -> str:
    if family is Family.IPV4:
        return str(ipaddress.IPv4Address(value))
    return str(ipaddress.IPv6Address(value))


BUILDERS = {
    "ipset": ipset_baseline,
    "nft-vmap": nft_vmap_baseline,
    "nft-seg": nft_segments_baseline,
}
