"""The same rules for iptables and nftables: an IR Policy as iptables-restore and `nft -f` text.

First match wins in all three: ACCEPT/DROP (iptables) and accept/drop (nft) end the
walk like fwc's allow/deny. Rate limits, and ICMP types on the other family's
ICMP protocol, have no translation here and raise `Unsupported`.
"""

from __future__ import annotations

from collections.abc import Sequence

from fwc.compiler.policy.ir import TCP_FLAGS, Action, AddressRange, Family, Policy, PortRange, Rule

CHAIN = "FWC"


class Unsupported(ValueError):
    """A rule this translation cannot express; the message names the rule."""


def _family_nets(ranges: Sequence[AddressRange], family: Family) -> tuple[bool, list[AddressRange]]:
    """(can match this family, the networks to test: empty means any address)."""
    if not ranges:
        return True, []
    nets = [r for r in ranges if r.family is family]
    return bool(nets), nets


def _protocols(rule: Rule) -> list[str | None]:
    """The L4 protocols one translated rule each covers (None: any)."""
    if rule.protocol.number is None:
        if rule.icmp_types:
            raise Unsupported(f"rule `{rule.name}`: ICMP types with protocol any")
        return ["tcp", "udp"] if rule.has_ports else [None]
    return [rule.protocol.value]


def _flag_names(bits: int) -> str:
    return ",".join(name for name, bit in TCP_FLAGS.items() if bits & bit)


def _verdict(rule: Rule) -> str:
    if rule.action is Action.RATE_LIMIT:
        raise Unsupported(f"rule `{rule.name}`: rate_limit has no iptables/nft translation here")
    return "ACCEPT" if rule.action is Action.ALLOW else "DROP"


# ---- iptables -----------------------------------------------------------------------


def _ports(option: str, ranges: Sequence[PortRange]) -> list[str]:
    """multiport takes 15 ports, a range counting two: longer lists become several matches."""
    groups: list[list[str]] = [[]]
    used = 0
    for r in ranges:
        cost = 1 if r.first == r.last else 2
        if used + cost > 15:
            groups.append([])
            used = 0
        groups[-1].append(str(r.first) if r.first == r.last else f"{r.first}:{r.last}")
        used += cost
    if len(groups) > 1:
        raise Unsupported(f"more than 15 {option} in one rule")
    return ["-m", "multiport", f"--{option}", ",".join(groups[0])]


def iptables_lines(rule: Rule, family: Family) -> list[str]:
    """The `-A FWC ...` lines of one rule for iptables (IPv4) or ip6tables (IPv6)."""
    verdict = _verdict(rule)
    ok_src, srcs = _family_nets(rule.sources, family)
    ok_dst, dsts = _family_nets(rule.destinations, family)
    if not (ok_src and ok_dst):
        return []
    lines = []
    for proto in _protocols(rule):
        args = ["-A", CHAIN]
        if srcs:
            args += ["-s", ",".join(str(n) for n in srcs)]
        if dsts:
            args += ["-d", ",".join(str(n) for n in dsts)]
        if proto is not None:
            number = {"icmp": "1", "icmpv6": "58"}.get(proto, proto)
            args += ["-p", number]
        if rule.source_ports:
            args += _ports("sports", rule.source_ports)
        if rule.destination_ports:
            args += _ports("dports", rule.destination_ports)
        if rule.has_tcp_flags:
            mask = _flag_names(rule.tcp_flags_set | rule.tcp_flags_clear)
            args += ["-m", "tcp", "--tcp-flags", mask, _flag_names(rule.tcp_flags_set) or "NONE"]
        types: list[int | None] = list(rule.icmp_types) or [None]
        for icmp_type in types:
            extra: list[str] = []
            if icmp_type is not None:
                native = (proto == "icmp") == (family is Family.IPV4)
                if not native:
                    raise Unsupported(f"rule `{rule.name}`: {proto} types in IPv{int(family)}")
                kind = "icmp" if family is Family.IPV4 else "icmp6"
                option = "--icmp-type" if family is Family.IPV4 else "--icmpv6-type"
                extra = ["-m", kind, option, str(icmp_type)]
            lines.append(" ".join([*args, *extra, "-j", verdict]))
    return lines


def iptables_restore(policy: Policy, interface: str, family: Family) -> str:
    """iptables-restore input: the raw table's PREROUTING sends `interface` to chain FWC."""
    default = "ACCEPT" if policy.default_action is Action.ALLOW else "DROP"
    lines = [
        "*raw",
        ":PREROUTING ACCEPT [0:0]",
        ":OUTPUT ACCEPT [0:0]",
        f":{CHAIN} - [0:0]",
        f"-A PREROUTING -i {interface} -j {CHAIN}",
    ]
    for rule in policy.rules:
        lines += iptables_lines(rule, family)
    lines += [f"-A {CHAIN} -j {default}", "COMMIT"]
    return "\n".join(lines) + "\n"


# ---- nftables -----------------------------------------------------------------------


def _set(items: Sequence[object]) -> str:
    text = ", ".join(str(i) for i in items)
    return text if len(items) == 1 else "{ " + text + " }"


def _nft_ports(ranges: Sequence[PortRange]) -> str:
    return _set([str(r.first) if r.first == r.last else f"{r.first}-{r.last}" for r in ranges])


def nft_lines(rule: Rule) -> list[str]:
    """The nft rule statements of one rule: one per address family it can match."""
    verdict = _verdict(rule).lower()
    families: list[Family | None] = (
        [Family.IPV4, Family.IPV6] if rule.sources or rule.destinations else [None]
    )
    out = []
    for family in families:
        parts: list[str] = []
        if family is not None:
            ok_src, srcs = _family_nets(rule.sources, family)
            ok_dst, dsts = _family_nets(rule.destinations, family)
            if not (ok_src and ok_dst):
                continue
            ip = "ip" if family is Family.IPV4 else "ip6"
            if srcs:
                parts.append(f"{ip} saddr {_set(srcs)}")
            if dsts:
                parts.append(f"{ip} daddr {_set(dsts)}")
        protos = _protocols(rule)
        if rule.has_ports:
            header = protos[0] if len(protos) == 1 else "th"
            if len(protos) > 1:
                parts.append("meta l4proto { tcp, udp }")
            if rule.source_ports:
                parts.append(f"{header} sport {_nft_ports(rule.source_ports)}")
            if rule.destination_ports:
                parts.append(f"{header} dport {_nft_ports(rule.destination_ports)}")
        elif protos[0] is not None and not rule.icmp_types and not rule.has_tcp_flags:
            parts.append(f"meta l4proto {protos[0]}")
        if rule.has_tcp_flags:
            mask = _flag_names(rule.tcp_flags_set | rule.tcp_flags_clear).lower().replace(",", "|")
            want = _flag_names(rule.tcp_flags_set).lower().replace(",", "|") or "0"
            parts.append(f"tcp flags & ({mask}) == {want}")
        if rule.icmp_types:
            proto = protos[0]
            if family is not None and (proto == "icmp") != (family is Family.IPV4):
                raise Unsupported(f"rule `{rule.name}`: {proto} types in IPv{int(family)}")
            parts.append(f"{proto} type {_set(list(rule.icmp_types))}")
        out.append(" ".join([*parts, verdict]))
    return out


def nft_ruleset(policy: Policy, interface: str, table: str = "fwc_bench") -> str:
    """`nft -f` input: a netdev table whose ingress chain on `interface` holds the rules."""
    default = "accept" if policy.default_action is Action.ALLOW else "drop"
    lines = [
        f"table netdev {table} {{",
        "\tchain ingress {",
        f'\t\ttype filter hook ingress device "{interface}" priority 0; policy accept;',
        # fwc never filters non-IP frames; iptables never sees them.
        "\t\tmeta protocol != { ip, ip6 } accept",
    ]
    for rule in policy.rules:
        lines += [f"\t\t{line}" for line in nft_lines(rule)]
    lines += [f"\t\t{default}", "\t}", "}"]
    return "\n".join(lines) + "\n"
