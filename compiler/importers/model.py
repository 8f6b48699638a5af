"""An imported rule before it becomes YAML: what it matches, what it does, where it came from."""

from __future__ import annotations

import enum
import fnmatch
from dataclasses import dataclass, field, replace

from fwc.compiler.importers import cidrs
from fwc.compiler.importers.cidrs import Net

PortSpan = tuple[int, int]

PROTOCOL_NAMES = {6: "tcp", 17: "udp", 1: "icmp", 58: "icmpv6"}


class SourceError(Exception):
    """A file that is not what it claims (a malformed save file): `file:line: reason`, exit 2."""


class Inexpressible(Exception):
    """Two matches meet in a way no one rule can say (the reason is the message)."""


@dataclass(frozen=True)
class Origin:
    """Where a source rule stands: `file:line` (iptables-save) or `file:handle N` (nft)."""

    file: str
    line: int
    where: str = ""  # how the place reads when it is not a line: "handle 7 (inet filter input)"

    def __str__(self) -> str:
        return f"{self.file}:{self.where or self.line}"


@dataclass(frozen=True)
class Gap:
    """A source rule fwc cannot express exactly, with the reason. `verdicts` says whether
    leaving it out changes any packet's verdict (a lost LOG does not)."""

    origin: Origin
    text: str
    reason: str
    verdicts: bool = True


@dataclass(frozen=True)
class Addresses:
    """A union of networks; `set_name` when it is exactly one named set, kept as `$name`."""

    nets: tuple[Net, ...]
    set_name: str | None = None


_GLOB = frozenset("*?[")


@dataclass(frozen=True)
class Interfaces:
    """Ingress interface globs (fwc's): one of `names` (None: any name) and none of `excluded`."""

    names: tuple[str, ...] | None = None
    excluded: tuple[str, ...] = ()

    @property
    def empty(self) -> bool:
        """True when no name can pass: every name (or prefix glob) lies in an excluded one."""
        if self.names is None:
            return False
        return all(any(_within(n, e) for e in self.excluded) for n in self.names)


def _within(name: str, glob: str) -> bool:
    """Every name `name` (a name or a prefix glob) matches also matches `glob`."""
    if not name.endswith("*"):
        return fnmatch.fnmatchcase(name, glob)
    return glob.endswith("*") and not _GLOB & set(glob[:-1]) and name.startswith(glob[:-1])


def _interfaces(a: Interfaces | None, b: Interfaces | None) -> Interfaces | None:
    """Both interface constraints: raises Inexpressible when each side names globs of its
    own (a name matching one glob of each is an AND a rule's list cannot say)."""
    if a is None or b is None:
        return a if b is None else b
    excluded = tuple(sorted(set(a.excluded) | set(b.excluded)))
    if a.names is None or b.names is None or a.names == b.names:
        names = a.names if b.names is None else b.names
    else:
        # (A1 or A2) and (B1 or B2) is the OR of every Ai and Bj
        met = (_meet_glob(x, y) for x in a.names for y in b.names)
        names = tuple(sorted({m for m in met if m is not None}))
    return Interfaces(names, excluded)


def _meet_glob(x: str, y: str) -> str | None:
    """The names both match, as one name or prefix glob (`stem*`, what iptables' `+` and
    nft's `*` say), or None when there are none."""
    for g in (x, y):
        if _GLOB & set(g[:-1] if g.endswith("*") else g):
            raise Inexpressible(f"interface patterns {x} and {y} meet in an AND no rule can say")
    if not x.endswith("*") and not y.endswith("*"):
        return x if x == y else None
    if not x.endswith("*") or not y.endswith("*"):
        name, glob = (x, y) if y.endswith("*") else (y, x)
        return name if fnmatch.fnmatchcase(name, glob) else None
    longer, shorter = (x, y) if len(x) >= len(y) else (y, x)
    return longer if longer.startswith(shorter[:-1]) else None


@dataclass(frozen=True)
class Match:
    """A conjunction of field constraints; None in a field means "not looked at"."""

    family: int | None = None  # 4 or 6
    protocol: int | None = None  # 6, 17, 1, 58
    src: Addresses | None = None
    dst: Addresses | None = None
    sport: tuple[PortSpan, ...] | None = None
    dport: tuple[PortSpan, ...] | None = None
    flags: tuple[tuple[str, bool], ...] | None = None  # (name, must be set)
    icmp: tuple[int, ...] | None = None
    iface: Interfaces | None = None  # the ingress interface
    state: int | None = None  # connection states, as ir.CT_STATES bits (0: none can match)

    @property
    def empty(self) -> bool:
        """True when no packet can match."""
        lists = (self.sport, self.dport, self.icmp)
        if any(v is not None and not v for v in lists) or self.iface_empty:
            return True
        if self.state == 0:
            return True
        return any(a is not None and not a.nets for a in (self.src, self.dst))

    @property
    def iface_empty(self) -> bool:
        return self.iface is not None and self.iface.empty


ANY = Match()


def _meet(a: int | None, b: int | None) -> tuple[bool, int | None]:
    if a is None or b is None or a == b:
        return True, a if a is not None else b
    return False, None


def _addresses(a: Addresses | None, b: Addresses | None, family: int | None) -> Addresses | None:
    if a is None and b is None:
        return None
    if a is None or b is None:
        one = a if a is not None else b
        assert one is not None
        if family is not None and any(n.version != family for n in one.nets):
            return Addresses(cidrs.only(one.nets, family))
        return one
    if a.nets == b.nets:
        return a if a.set_name else b
    nets = cidrs.intersect(a.nets, b.nets)
    return Addresses(cidrs.only(nets, family) if family is not None else nets)


def _ports(
    a: tuple[PortSpan, ...] | None, b: tuple[PortSpan, ...] | None
) -> tuple[PortSpan, ...] | None:
    if a is None or b is None:
        return a if b is None else b
    out = [(max(x[0], y[0]), min(x[1], y[1])) for x in a for y in b]
    return normalize_ports(p for p in out if p[0] <= p[1])


def _flags(
    a: tuple[tuple[str, bool], ...] | None, b: tuple[tuple[str, bool], ...] | None
) -> tuple[bool, tuple[tuple[str, bool], ...] | None]:
    if a is None or b is None:
        return True, a if b is None else b
    merged = dict(a)
    for name, want in b:
        if merged.get(name, want) != want:
            return False, None
        merged[name] = want
    return True, tuple(sorted(merged.items()))


def intersect(a: Match, b: Match) -> Match | None:
    """The packets both match, or None when there are none; Inexpressible when one rule
    cannot say them."""
    ok_f, family = _meet(a.family, b.family)
    ok_p, protocol = _meet(a.protocol, b.protocol)
    ok_t, flags = _flags(a.flags, b.flags)
    if not (ok_f and ok_p and ok_t):
        return None
    icmp = (
        a.icmp
        if b.icmp is None
        else b.icmp
        if a.icmp is None
        else tuple(sorted(set(a.icmp) & set(b.icmp)))
    )
    out = Match(
        family,
        protocol,
        _addresses(a.src, b.src, family),
        _addresses(a.dst, b.dst, family),
        _ports(a.sport, b.sport),
        _ports(a.dport, b.dport),
        flags,
        icmp,
        _interfaces(a.iface, b.iface),
        a.state if b.state is None else b.state if a.state is None else a.state & b.state,
    )
    return None if out.empty else out


def normalize_ports(spans: object) -> tuple[PortSpan, ...]:
    """Sorted, merged port spans."""
    merged: list[PortSpan] = []
    for lo, hi in sorted(spans):  # type: ignore[call-overload]
        if merged and lo <= merged[-1][1] + 1:
            merged[-1] = (merged[-1][0], max(hi, merged[-1][1]))
        else:
            merged.append((lo, hi))
    return tuple(merged)


def complement_ports(spans: tuple[PortSpan, ...]) -> tuple[PortSpan, ...]:
    out: list[PortSpan] = []
    nxt = 0
    for lo, hi in normalize_ports(spans):
        if lo > nxt:
            out.append((nxt, lo - 1))
        nxt = hi + 1
    if nxt <= 65535:
        out.append((nxt, 65535))
    return tuple(out)


class Verdict(enum.Enum):
    ACCEPT = "accept"
    DROP = "drop"
    REJECT = "reject"  # imported as deny, with a warning
    RETURN = "return"
    JUMP = "jump"
    GOTO = "goto"
    CONTINUE = "continue"  # a rule that decides nothing (LOG alone, a counter)


@dataclass(frozen=True)
class Entry:
    """One source rule: its match (None when it cannot be expressed, then `gap` says why)."""

    origin: Origin
    text: str
    match: Match | None
    verdict: Verdict
    target: str = ""  # the chain of a jump or goto
    log: bool = False
    description: str = ""
    gap: Gap | None = None
    warnings: tuple[str, ...] = ()


@dataclass
class Chain:
    """A chain; `policy` is ACCEPT or DROP for a base chain, None for a user chain."""

    name: str
    origin: Origin
    policy: Verdict | None = None
    entries: list[Entry] = field(default_factory=list)
    family: int | None = None  # a base chain that sees one family only (nft ip, ip6 tables)


@dataclass
class Ruleset:
    """The chains of one source; `bases` are the base chains a packet meets, in order.

    `context` restricts every rule to the packets this source sees (IPv4 for
    iptables-save, IPv6 for ip6tables-save, none for an inet table).
    """

    source: str
    chains: dict[str, Chain]
    bases: list[str]
    context: Match = ANY
    gaps: list[Gap] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Flat:
    """One rule of the flattened first-match list; `via` names the jumps that led to it."""

    match: Match
    allow: bool
    origin: Origin
    text: str
    log: bool = False
    description: str = ""
    via: tuple[Origin, ...] = ()
    warnings: tuple[str, ...] = ()
    catch_all: bool = False  # the end of a chain: its policy, or a RETURN's continuation


def with_family(match: Match, family: int) -> Match:
    return replace(match, family=family)
