"""The flattened rules written as a policy YAML, each rule under a comment naming its source."""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from fwc.compiler.importers.ctstate import state_names
from fwc.compiler.importers.model import PROTOCOL_NAMES, Addresses, Flat, Gap, Match

PRIORITY_STEP = 10


@dataclass
class Imported:
    """Everything the policy is made of: the rules of each source in order, the default
    action, the sets, the gaps left out, and notes for the header."""

    name: str
    default_allow: bool
    rules: list[Flat]
    sets: dict[str, tuple[str, ...]] = field(default_factory=dict)
    gaps: list[Gap] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    prefixes: list[str] = field(default_factory=list)  # rule name prefix per rule


def _quote(text: str) -> str:
    return json.dumps(text, ensure_ascii=False)


def _list(items: list[str]) -> str:
    return "[" + ", ".join(items) + "]"


def _addresses(spec: Addresses, sets: dict[str, tuple[str, ...]]) -> str:
    if spec.set_name is not None:
        sets.setdefault(spec.set_name, tuple(str(n) for n in spec.nets))
        return _list([_quote("$" + spec.set_name)])
    return _list([_quote(str(n)) for n in spec.nets])


def _ports(spans: tuple[tuple[int, int], ...]) -> str:
    return _list([str(a) if a == b else _quote(f"{a}-{b}") for a, b in spans])


def match_fields(match: Match, sets: dict[str, tuple[str, ...]]) -> list[str]:
    """The rule keys (`key: value` lines) that say exactly `match`."""
    out: list[str] = []
    if match.protocol is not None:
        out.append(f"protocol: {PROTOCOL_NAMES[match.protocol]}")
    if match.src is not None:
        out.append(f"source_cidrs: {_addresses(match.src, sets)}")
    if match.dst is not None:
        out.append(f"destination_cidrs: {_addresses(match.dst, sets)}")
    if match.family is not None and match.src is None and match.dst is None:
        out.append(f"source_cidrs: [{_quote('0.0.0.0/0' if match.family == 4 else '::/0')}]")
    if match.sport is not None:
        out.append(f"source_ports: {_ports(match.sport)}")
    if match.dport is not None:
        out.append(f"destination_ports: {_ports(match.dport)}")
    if match.flags is not None:
        order = ("FIN", "SYN", "RST", "PSH", "ACK", "URG", "ECE", "CWR")
        flags = sorted(match.flags, key=lambda f: order.index(f[0]))
        out.append(f"tcp_flags: {_quote(','.join(n if on else '!' + n for n, on in flags))}")
    if match.icmp is not None:
        out.append(f"icmp_types: {_list([str(t) for t in match.icmp])}")
    if match.state is not None:
        out.append(f"state: {_list(state_names(match.state))}")
    if match.iface is not None:
        globs = [*(match.iface.names or ()), *("!" + g for g in match.iface.excluded)]
        out.append(f"interfaces: {_list([_quote(g) for g in globs])}")
    return out


def _rule(flat: Flat, name: str, priority: int, sets: dict[str, tuple[str, ...]]) -> list[str]:
    lines = [f"  # {flat.origin}: {flat.text}"]
    lines += [f"  #   reached through {via}" for via in flat.via]
    lines += [f"  #   warning: {w}" for w in flat.warnings]
    lines.append(f"  - name: {name}")
    lines.append(f"    priority: {priority}")
    lines.append(f"    action: {'allow' if flat.allow else 'deny'}")
    lines += ["    " + f for f in match_fields(flat.match, sets)]
    if flat.log:
        lines.append("    log: true")
    said = f"{flat.origin}" + (f": {flat.description}" if flat.description else "")
    lines.append(f"    description: {_quote(said[:1024])}")
    return lines


def render(result: Imported, sources: list[str], lossy: bool) -> str:
    """The policy text."""
    head = [f"# Imported by `fwc import` from {', '.join(sources)}."]
    head += [f"# {note}" for note in result.notes]
    if result.gaps:
        head.append("# THIS POLICY DIFFERS FROM THE SOURCE: these rules were left out (--lossy):")
        head += [
            f"#   {g.origin}: {g.reason}{'' if g.verdicts else ' (verdicts unchanged)'}: {g.text}"
            for g in result.gaps
        ]
    step = PRIORITY_STEP if len(result.rules) * PRIORITY_STEP <= 65535 else 1
    sets: dict[str, tuple[str, ...]] = {}
    body: list[str] = []
    used: dict[str, int] = {}
    for k, flat in enumerate(result.rules):
        base = f"{result.prefixes[k]}{flat.origin.line or ''}"
        used[base] = used.get(base, 0) + 1
        name = base if used[base] == 1 else f"{base}_{used[base]}"
        body += _rule(flat, name, (k + 1) * step, sets)
    lines = [
        *head,
        f"name: {result.name}",
        f"default_action: {'allow' if result.default_allow else 'deny'}",
    ]
    if sets:
        lines.append("sets:")
        lines += [
            f"  {n}: {_list([_quote(e) for e in entries])}" for n, entries in sorted(sets.items())
        ]
    lines.append("rules:" if body else "rules: []")
    return "\n".join(lines + body) + "\n"
