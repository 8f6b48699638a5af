"""iptables-save and ip6tables-save output read into a ruleset of the filter table's INPUT.

What each match option means in fwc is decided in one place, `OPTIONS` (options that map
to fields) and `REASONS` (what cannot be said yet, and why).
"""

from __future__ import annotations

import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from fwc.compiler.importers import cidrs
from fwc.compiler.importers.ctstate import StateError, state_bits
from fwc.compiler.importers.icmp import icmp_type
from fwc.compiler.importers.ipset import IpSet
from fwc.compiler.importers.model import (
    Addresses,
    Chain,
    Entry,
    Gap,
    Inexpressible,
    Interfaces,
    Match,
    Origin,
    Ruleset,
    SourceError,
    Verdict,
    complement_ports,
    intersect,
    normalize_ports,
)

REJECT_WARNING = "REJECT imported as deny: XDP drops, the sender gets no ICMP error or TCP reset"
CONNTRACK = "this conntrack match is not expressible: fwc matches the connection state only"
CT_OPTION_REASONS = {
    o: f"conntrack {o} is not expressible: fwc matches the connection state (--ctstate) only"
    for o in (
        "--ctproto", "--ctorigsrc", "--ctorigdst", "--ctreplsrc", "--ctrepldst",
        "--ctorigsrcport", "--ctorigdstport", "--ctreplsrcport", "--ctrepldstport",
        "--ctstatus", "--ctexpire", "--ctdir",
    )
}  # fmt: skip

# Matches and options fwc cannot express yet, with the reason a finding gives.
REASONS: dict[str, str] = {
    "-o": "an output interface never matches on INPUT",
    "--out-interface": "an output interface never matches on INPUT",
    "-f": "a fragment match: fwc sees fragments before reassembly, netfilter's INPUT after",
    "--fragment": "a fragment match: fwc sees fragments before reassembly, netfilter's INPUT after",
    **CT_OPTION_REASONS,
    "limit": "limit is one bucket for all sources; fwc's rate_limit keeps one per source",
    "hashlimit": "hashlimit counts in its own units and modes; fwc's rate_limit is not the same",
    "recent": "recent keeps per-source history: not expressible",
    "connlimit": "connlimit counts connections: not expressible",
    "addrtype": "addrtype depends on the host's routes: not expressible",
    "string": "string matches payload bytes: not expressible",
    "mark": "packet marks are not expressible",
    "connmark": "connection marks are not expressible",
    "pkttype": "link-layer packet type is not expressible",
}

TARGET_REASONS: dict[str, str] = {
    "SYNPROXY": "SYNPROXY needs conntrack: not expressible",
    "TCPMSS": "TCPMSS rewrites packets: not expressible",
    "MARK": "MARK sets a packet mark: not expressible",
    "CONNMARK": "CONNMARK sets a connection mark: not expressible",
    "CT": "CT changes conntrack: not expressible",
}

PROTOCOLS = {
    "tcp": 6, "6": 6, "udp": 17, "17": 17, "icmp": 1, "1": 1,
    "ipv6-icmp": 58, "icmpv6": 58, "icmp6": 58, "58": 58,
}  # fmt: skip
ALL_PROTOCOLS = ("all", "0")
TCP_FLAG_NAMES = ("FIN", "SYN", "RST", "PSH", "ACK", "URG", "ECE", "CWR")


class _Unsupported(Exception):
    """An option the rule uses that fwc cannot express: the rule becomes a finding."""


@dataclass
class _Parse:
    """What the options of one rule said so far."""

    family: int
    ipsets: dict[str, IpSet] | None
    origin: Origin
    pieces: list[Match] = field(default_factory=list)
    description: str = ""
    protocol: int | None = None


Handler = Callable[[_Parse, list[str], bool], None]


def _addresses(p: _Parse, values: list[str], negated: bool, dst: bool) -> None:
    nets: list[cidrs.Net] = []
    for text in values[0].split(","):
        try:
            nets.append(cidrs.parse_net(text))
        except ValueError:
            raise SourceError(f"{p.origin}: {text!r} is not an address") from None
    if any(n.version != p.family for n in nets):
        raise SourceError(f"{p.origin}: {values[0]} is not an IPv{p.family} address")
    _add_nets(p, tuple(nets), negated, dst)


def _add_nets(
    p: _Parse, nets: tuple[cidrs.Net, ...], negated: bool, dst: bool, name: str | None = None
) -> None:
    spec = Addresses(cidrs.complement(nets, p.family), None) if negated else Addresses(nets, name)
    p.pieces.append(Match(dst=spec) if dst else Match(src=spec))


def _protocol(p: _Parse, values: list[str], negated: bool) -> None:
    name = values[0].lower()
    if name in ALL_PROTOCOLS and not negated:
        return
    if negated:
        raise _Unsupported(f"a negated protocol (! -p {name}) is not expressible")
    if name not in PROTOCOLS:
        raise _Unsupported(f"protocol {name} is not one fwc matches (tcp, udp, icmp, icmpv6)")
    p.protocol = PROTOCOLS[name]
    p.pieces.append(Match(protocol=p.protocol))


def _port(text: str, origin: Origin) -> int:
    if text.isdigit() and int(text) <= 65535:
        return int(text)
    try:
        return socket.getservbyname(text)
    except OSError:
        raise SourceError(f"{origin}: {text!r} is not a port") from None


def _span(text: str, origin: Origin) -> tuple[int, int]:
    lo, sep, hi = text.partition(":")
    first = _port(lo, origin) if lo else 0
    last = (_port(hi, origin) if hi else 65535) if sep else first
    if first > last:
        raise SourceError(f"{origin}: port range {text} ends before it starts")
    return first, last


def _ports(p: _Parse, values: list[str], negated: bool, dst: bool) -> None:
    if p.protocol not in (6, 17):
        raise _Unsupported("ports on a protocol other than tcp or udp")
    spans = normalize_ports(_span(t, p.origin) for t in values[0].split(","))
    if negated:
        spans = complement_ports(spans)
    p.pieces.append(Match(dport=spans) if dst else Match(sport=spans))


def _tcp_flags(p: _Parse, values: list[str], negated: bool) -> None:
    if negated:
        raise _Unsupported("negated TCP flags are a disjunction: not expressible in one rule")

    def names(text: str) -> set[str]:
        upper = text.upper()
        if upper == "ALL":
            return set(TCP_FLAG_NAMES)
        if upper == "NONE":
            return set()
        listed = set(upper.split(","))
        if not listed <= set(TCP_FLAG_NAMES):
            raise SourceError(f"{p.origin}: {text!r} is not a list of TCP flags")
        return listed

    mask, comp = names(values[0]), names(values[1])
    p.pieces.append(Match(protocol=6, flags=tuple(sorted((f, f in comp) for f in mask))))


def _syn(p: _Parse, values: list[str], negated: bool) -> None:
    _tcp_flags(p, ["SYN,RST,ACK,FIN", "SYN"], negated)


def _icmp(p: _Parse, values: list[str], negated: bool, v6: bool) -> None:
    try:
        kind, code = icmp_type(values[0], v6)
    except ValueError:
        raise SourceError(f"{p.origin}: {values[0]!r} is not an ICMP type") from None
    if code is not None:
        raise _Unsupported(f"ICMP code {values[0]}: fwc matches ICMP types only")
    if kind < 0:
        types: tuple[int, ...] = tuple(range(256)) if not negated else ()
    else:
        types = tuple(t for t in range(256) if t != kind) if negated else (kind,)
    p.pieces.append(Match(icmp=types))


def _range(p: _Parse, values: list[str], negated: bool, dst: bool) -> None:
    first, _, last = values[0].partition("-")
    try:
        nets = cidrs.cover_range(first, last or first)
    except ValueError:
        raise SourceError(f"{p.origin}: {values[0]!r} is not an address range") from None
    _add_nets(p, nets, negated, dst)


def _match_set(p: _Parse, values: list[str], negated: bool) -> None:
    name, direction = values
    if direction not in ("src", "dst"):
        raise _Unsupported(f"--match-set {name} {direction}: only one address (src or dst) maps")
    if p.ipsets is None:
        raise SourceError(
            f"{p.origin}: the rule names ipset {name!r}: give the ipset save file with --ipset"
        )
    found = p.ipsets.get(name)
    if found is None:
        raise SourceError(f"{p.origin}: ipset {name!r} is not in the --ipset file")
    if found.unsupported:
        raise _Unsupported(found.unsupported)
    if found.family != p.family:
        _add_nets(p, (), negated, direction == "dst")
        return
    _add_nets(p, cidrs.normalize(found.nets), negated, direction == "dst", set_name(name))


def interface_glob(name: str) -> str:
    """An iptables or nft interface name as an fwc glob: a trailing `+` (iptables) or `*`
    (nft) matches any rest; _Unsupported for names fwc's globs would read otherwise."""
    stem, wild = (name[:-1], True) if name[-1:] in ("+", "*") else (name, False)
    if not stem and wild:
        return "*"
    if set(stem) & set("*?[]!\\") or not stem:
        raise _Unsupported(f"interface name {name!r} holds characters fwc's globs read as patterns")
    return stem + "*" if wild else stem


def _in_interface(p: _Parse, values: list[str], negated: bool) -> None:
    glob = interface_glob(values[0])
    if glob == "*":
        # `-i +` is every interface; `! -i +` none
        p.pieces.append(Match(iface=Interfaces(()) if negated else None))
        return
    iface = Interfaces(excluded=(glob,)) if negated else Interfaces((glob,))
    p.pieces.append(Match(iface=iface))


def _state(p: _Parse, values: list[str], negated: bool) -> None:
    try:
        bits = state_bits(values[0].split(","), negated)
    except StateError as exc:
        raise _Unsupported(str(exc)) from None
    p.pieces.append(Match(state=bits))


def _comment(p: _Parse, values: list[str], negated: bool) -> None:
    p.description = values[0]


def set_name(name: str) -> str:
    """An ipset's name as a policy set name (`[A-Za-z_][A-Za-z0-9_]*`)."""
    out = "".join(c if c.isalnum() or c == "_" else "_" for c in name)
    return out if out[:1].isalpha() or out[:1] == "_" else f"set_{out}"[:63]


# option -> (how many values follow it, what it means)
OPTIONS: dict[str, tuple[int, Handler]] = {
    "-s": (1, lambda p, v, n: _addresses(p, v, n, False)),
    "--source": (1, lambda p, v, n: _addresses(p, v, n, False)),
    "-d": (1, lambda p, v, n: _addresses(p, v, n, True)),
    "--destination": (1, lambda p, v, n: _addresses(p, v, n, True)),
    "-p": (1, _protocol),
    "--protocol": (1, _protocol),
    "--sport": (1, lambda p, v, n: _ports(p, v, n, False)),
    "--source-port": (1, lambda p, v, n: _ports(p, v, n, False)),
    "--dport": (1, lambda p, v, n: _ports(p, v, n, True)),
    "--destination-port": (1, lambda p, v, n: _ports(p, v, n, True)),
    "--sports": (1, lambda p, v, n: _ports(p, v, n, False)),
    "--source-ports": (1, lambda p, v, n: _ports(p, v, n, False)),
    "--dports": (1, lambda p, v, n: _ports(p, v, n, True)),
    "--destination-ports": (1, lambda p, v, n: _ports(p, v, n, True)),
    "--tcp-flags": (2, _tcp_flags),
    "--syn": (0, _syn),
    "--icmp-type": (1, lambda p, v, n: _icmp(p, v, n, False)),
    "--icmpv6-type": (1, lambda p, v, n: _icmp(p, v, n, True)),
    "--src-range": (1, lambda p, v, n: _range(p, v, n, False)),
    "--dst-range": (1, lambda p, v, n: _range(p, v, n, True)),
    "--match-set": (2, _match_set),
    "--comment": (1, _comment),
    "--ctstate": (1, _state),
    "--state": (1, _state),
    "-i": (1, _in_interface),
    "--in-interface": (1, _in_interface),
}
MODULES = (
    "tcp", "udp", "icmp", "icmp6", "multiport", "iprange", "set", "comment", "conntrack", "state",
)  # fmt: skip


def _parse_matches(p: _Parse, words: list[str]) -> None:
    """Fill `p` from the match part of a rule; raise _Unsupported at the first gap."""
    i, negated = 0, False
    while i < len(words):
        word = words[i]
        i += 1
        if word == "!":
            negated = True
            continue
        if word in ("-m", "--match"):
            module = words[i] if i < len(words) else ""
            i += 1
            if module not in MODULES:
                raise _Unsupported(REASONS.get(module, f"match {module} is not expressible in fwc"))
            continue
        if word in REASONS:
            raise _Unsupported(REASONS[word])
        if word not in OPTIONS:
            raise _Unsupported(f"option {word} is not expressible in fwc")
        arity, handler = OPTIONS[word]
        values = words[i : i + arity]
        if len(values) < arity:
            raise SourceError(f"{p.origin}: {word} needs {arity} value(s)")
        i += arity
        handler(p, values, negated)
        negated = False


def _target(words: list[str], origin: Origin, chains: dict[str, Chain]) -> tuple[Verdict, str, str]:
    """(verdict, chain, reason when not expressible) of the target part `-j X ...`."""
    if not words:
        return Verdict.CONTINUE, "", ""
    kind, name = words[0], words[1] if len(words) > 1 else ""
    if kind == "-g":
        return Verdict.GOTO, name, ""
    simple = {
        "ACCEPT": Verdict.ACCEPT,
        "DROP": Verdict.DROP,
        "REJECT": Verdict.REJECT,
        "RETURN": Verdict.RETURN,
    }
    if name in simple:
        return simple[name], "", ""
    if name in ("LOG", "NFLOG"):
        return Verdict.CONTINUE, name, ""
    if name in chains:
        return Verdict.JUMP, name, ""
    return (
        Verdict.CONTINUE,
        "",
        TARGET_REASONS.get(name, f"target {name} is not expressible in fwc"),
    )


def parse_rule(
    words: list[str],
    origin: Origin,
    text: str,
    family: int,
    chains: dict[str, Chain],
    ipsets: dict[str, IpSet] | None,
) -> Entry:
    cut = next(
        (k for k, w in enumerate(words) if w in ("-j", "--jump", "-g", "--goto")), len(words)
    )
    tail = words[cut:]
    if tail[:1] == ["--jump"]:
        tail[0] = "-j"
    if tail[:1] == ["--goto"]:
        tail[0] = "-g"
    if tail and len(tail) < 2:
        raise SourceError(f"{origin}: {tail[0]} needs a target")
    verdict, target, reason = _target(tail, origin, chains)
    if verdict is Verdict.GOTO and target not in chains:
        raise SourceError(f"{origin}: no chain named {target!r}")
    logs = target in ("LOG", "NFLOG")
    p = _Parse(family, ipsets, origin)
    try:
        _parse_matches(p, words[:cut])
        if reason:
            raise _Unsupported(reason)
    except _Unsupported as exc:
        gap = Gap(origin, text, str(exc), verdicts=not logs and bool(tail))
        return Entry(origin, text, None, verdict, target, gap=gap, description=p.description)
    match: Match | None = Match()
    try:
        for piece in p.pieces:
            match = intersect(match, piece) if match is not None else None
    except Inexpressible as exc:
        gap = Gap(origin, text, str(exc), verdicts=not logs and bool(tail))
        return Entry(origin, text, None, verdict, target, gap=gap, description=p.description)
    if match is None:
        return Entry(origin, text, Match(), Verdict.CONTINUE, description="matches no packet")
    warnings = (REJECT_WARNING,) if verdict is Verdict.REJECT else ()
    return Entry(
        origin,
        text,
        match,
        verdict,
        target if not logs else "",
        logs,
        p.description,
        warnings=warnings,
    )


def _words(line: str, origin: Origin) -> list[str]:
    """The words of a rule line as iptables-restore reads them: `"` quotes, and a backslash
    takes the next character as it is (`"\\'ssh\\'"` is `'ssh'`)."""
    if '"' not in line and "\\" not in line:
        return line.split()
    words: list[str] = []
    word: list[str] | None = None
    quoted = escaped = False
    for char in line:
        if escaped:
            word = [*(word or []), char]
            escaped = False
        elif char == "\\":
            escaped = True
        elif char == '"':
            quoted = not quoted
            word = word or []
        elif char.isspace() and not quoted:
            if word is not None:
                words.append("".join(word))
            word = None
        else:
            word = [*(word or []), char]
    if quoted or escaped:
        raise SourceError(f"{origin}: a quote or backslash is not closed")
    if word is not None:
        words.append("".join(word))
    return words


@dataclass
class _Table:
    name: str
    chains: dict[str, Chain] = field(default_factory=dict)
    committed: bool = False


def detect_family(text: str) -> int:
    """6 for ip6tables-save output, 4 for iptables-save (by its header, else its addresses)."""
    for raw in text.splitlines():
        if raw.startswith("# Generated by ip6tables"):
            return 6
        if raw.startswith("# Generated by iptables"):
            return 4
    return 6 if any((":" in w and "/" in w) or "icmpv6" in w for w in text.split()) else 4


def read_iptables(path: str, ipsets: dict[str, IpSet] | None, family: int | None = None) -> Ruleset:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise SourceError(f"{path}: cannot read: {getattr(exc, 'strerror', None) or exc}") from None
    family = family or detect_family(text)
    tables: list[_Table] = []
    gaps: list[Gap] = []
    notes: list[str] = []
    for number, raw in enumerate(text.splitlines(), 1):
        _line(path, number, raw.strip(), tables, (gaps, notes), family, ipsets)
    if tables and not tables[-1].committed:
        raise SourceError(f"{path}: table {tables[-1].name} has no COMMIT line")
    chains = next((t.chains for t in tables if t.name == "filter"), {})
    if "INPUT" not in chains:
        chains["INPUT"] = Chain("INPUT", Origin(path, 0, "(no filter INPUT chain)"), Verdict.ACCEPT)
    return Ruleset(path, chains, ["INPUT"], Match(family=family), gaps, notes)


def _line(
    path: str,
    number: int,
    line: str,
    tables: list[_Table],
    found: tuple[list[Gap], list[str]],
    family: int,
    ipsets: dict[str, IpSet] | None,
) -> None:
    origin = Origin(path, number)
    if not line or line.startswith("#"):
        return
    table = tables[-1] if tables and not tables[-1].committed else None
    if line.startswith("*"):
        if table is not None:
            raise SourceError(f"{origin}: table {line[1:]} starts before COMMIT of {table.name}")
        tables.append(_Table(line[1:]))
        return
    if table is None:
        raise SourceError(f"{origin}: a line outside a table (*filter ... COMMIT)")
    if line == "COMMIT":
        table.committed = True
        return
    if line.startswith(":"):
        _chain(origin, line, table, *found)
        return
    words = _words(line, origin)
    if words and words[0].startswith("[") and words[0].endswith("]"):
        words = words[1:]  # packet and byte counters of iptables-save -c
    if len(words) < 2 or words[0] not in ("-A", "--append"):
        raise SourceError(f"{origin}: not a rule, chain, table or COMMIT line")
    chain = table.chains.get(words[1])
    if chain is None:
        raise SourceError(f"{origin}: chain {words[1]!r} is not declared in table {table.name}")
    if table.name != "filter":
        found[0].append(
            Gap(
                origin, line, f"table {table.name}: fwc imports the filter table's INPUT chain only"
            )
        )
        return
    if words[1] in ("OUTPUT", "FORWARD"):
        found[0].append(
            Gap(
                origin,
                line,
                f"filter {words[1]}: fwc filters the packets that arrive, with INPUT's rules",
            )
        )
        return
    chain.entries.append(parse_rule(words[2:], origin, line, family, table.chains, ipsets))


def _chain(origin: Origin, line: str, table: _Table, gaps: list[Gap], notes: list[str]) -> None:
    words = line[1:].split()
    if not words:
        raise SourceError(f"{origin}: a chain line without a name")
    name, policy = words[0], words[1] if len(words) > 1 else "-"
    if policy not in ("ACCEPT", "DROP", "-"):
        raise SourceError(f"{origin}: chain policy {policy!r} is neither ACCEPT nor DROP")
    builtin = policy != "-"
    table.chains[name] = Chain(
        name, origin, (Verdict.ACCEPT if policy == "ACCEPT" else Verdict.DROP) if builtin else None
    )
    if not builtin or policy == "ACCEPT" or (table.name, name) == ("filter", "INPUT"):
        return
    if table.name == "filter" and name in ("FORWARD", "OUTPUT"):
        notes.append(
            f"{origin}: policy DROP of filter {name} is not imported (fwc filters arriving packets)"
        )
    else:
        reason = f"policy DROP of {table.name} {name}: fwc imports the filter table's INPUT only"
        gaps.append(Gap(origin, line, reason))
