"""`nft -j list ruleset` read into a ruleset of the input-hook base chains, in hook order.

What each expression means in fwc is decided in `_payload` and `_match`; what cannot be
said yet, and why, in `REASONS`.
"""

from __future__ import annotations

import json
import socket
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from fwc.compiler.importers import cidrs
from fwc.compiler.importers.ctstate import StateError, state_bits
from fwc.compiler.importers.icmp import icmp_type
from fwc.compiler.importers.iptables import (
    CONNTRACK,
    PROTOCOLS,
    REJECT_WARNING,
    interface_glob,
    set_name,
)
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
from fwc.compiler.importers.nft_text import rule_text

TCP_FLAGS = {"protocol": "tcp", "field": "flags"}
IP_FAMILIES = {"inet": None, "ip": 4, "ip6": 6}
REASONS: dict[str, str] = {
    "ct": CONNTRACK,
    "limit": "limit is one bucket for all sources; fwc's rate_limit keeps one per source",
    "ip6 nexthdr": "ip6 nexthdr is the first next header, not the transport protocol",
    "th": "th (any transport header) is not expressible: name tcp or udp",
}


class _Unsupported(Exception):
    pass


@dataclass
class _NftSet:
    name: str
    kind: str  # "addr" or "port"
    values: tuple[Any, ...]
    unsupported: str = ""


@dataclass
class _Rule:
    origin: Origin
    family: int | None
    sets: dict[str, _NftSet]
    pieces: list[list[Match]] = field(default_factory=list)  # each: disjoint alternatives
    warnings: list[str] = field(default_factory=list)


def _addr_values(r: _Rule, right: Any, family: int) -> tuple[cidrs.Net, ...]:
    if isinstance(right, str) and right.startswith("@"):
        found = _named(r, right[1:], "addr")
        return tuple(found.values)
    items = right["set"] if isinstance(right, dict) and "set" in right else [right]
    nets: list[cidrs.Net] = []
    for item in items:
        try:
            if isinstance(item, dict) and "prefix" in item:
                nets.append(cidrs.parse_net(f"{item['prefix']['addr']}/{item['prefix']['len']}"))
            elif isinstance(item, dict) and "range" in item:
                nets.extend(cidrs.cover_range(*map(str, item["range"])))
            elif isinstance(item, str):
                nets.append(cidrs.parse_net(item))
            else:
                raise _Unsupported(f"address value {json.dumps(item)} is not expressible")
        except (ValueError, TypeError, KeyError):
            raise SourceError(f"{r.origin}: {json.dumps(item)} is not an address") from None
    if any(n.version != family for n in nets):
        raise SourceError(f"{r.origin}: an IPv{10 - family} address in an IPv{family} match")
    return tuple(nets)


def _named(r: _Rule, name: str, kind: str) -> _NftSet:
    found = r.sets.get(name)
    if found is None:
        raise SourceError(f"{r.origin}: no set named {name!r}")
    if found.unsupported:
        raise _Unsupported(found.unsupported)
    if found.kind != kind:
        raise _Unsupported(f"set @{name} holds {found.kind}s, not {kind}s")
    return found


def _port(value: Any, origin: Origin) -> int:
    if isinstance(value, int) and 0 <= value <= 65535:
        return value
    try:
        return socket.getservbyname(str(value))
    except OSError:
        raise SourceError(f"{origin}: {json.dumps(value)} is not a port") from None


def _port_values(r: _Rule, right: Any) -> tuple[tuple[int, int], ...]:
    if isinstance(right, str) and right.startswith("@"):
        return tuple(_named(r, right[1:], "port").values)
    items = right["set"] if isinstance(right, dict) and "set" in right else [right]
    spans = []
    for item in items:
        if isinstance(item, dict) and "range" in item:
            spans.append((_port(item["range"][0], r.origin), _port(item["range"][1], r.origin)))
        else:
            spans.append((_port(item, r.origin),) * 2)
    return normalize_ports(spans)


def _protocols(right: Any, family: int | None) -> list[Match]:
    """One match per protocol of `right` (a name or a set of them): disjoint alternatives."""
    items = right["set"] if isinstance(right, dict) and "set" in right else [right]
    return [Match(family=family, protocol=_protocol_value(item)) for item in items]


def _protocol_value(right: Any) -> int:
    name = str(right).lower()
    if name not in PROTOCOLS:
        raise _Unsupported(f"protocol {name} is not one fwc matches (tcp, udp, icmp, icmpv6)")
    return PROTOCOLS[name]


def _flags(op: str, left: Any, right: Any) -> Match:
    names = ("fin", "syn", "rst", "psh", "ack", "urg", "ecn", "cwr")
    fwc_names = dict(
        zip(names, ("FIN", "SYN", "RST", "PSH", "ACK", "URG", "ECE", "CWR"), strict=True)
    )
    value = set(right if isinstance(right, list) else [right])
    if op == "!" and "&" not in left:  # flags & (listed) == 0
        mask, value = value, set()
    elif "&" in left and op == "==":
        mask = set(left["&"][1] if isinstance(left["&"][1], list) else [left["&"][1]])
    elif op == "==":
        mask = set(names)
    elif op == "in" and len(value) == 1:
        mask = value
    else:
        raise _Unsupported("this TCP flags test is a disjunction: not expressible in one rule")
    if not (mask | value) <= set(names) or not value <= mask:
        raise _Unsupported(
            f"TCP flags {sorted(value)} under mask {sorted(mask)} are not expressible"
        )
    return Match(protocol=6, flags=tuple(sorted((fwc_names[f], f in value) for f in mask)))


def _icmp_values(right: Any, v6: bool, negated: bool) -> tuple[int, ...]:
    items = right["set"] if isinstance(right, dict) and "set" in right else [right]
    types: set[int] = set()
    for item in items:
        if isinstance(item, dict):
            raise _Unsupported("an ICMP type range is not expressible")
        kind, code = icmp_type(str(item), v6)
        if code is not None or kind < 0:
            raise _Unsupported(f"ICMP {item}: fwc matches ICMP types only")
        types.add(kind)
    return tuple(t for t in range(256) if (t in types) != negated)


def _payload(r: _Rule, payload: dict[str, Any], op: str, right: Any) -> Match | list[Match]:
    proto, fld = payload.get("protocol"), payload.get("field")
    negated = op == "!="
    if op not in ("==", "!="):
        raise _Unsupported(f"operator {op} on {proto} {fld} is not expressible")
    if proto in ("ip", "ip6") and fld in ("saddr", "daddr"):
        family = 4 if proto == "ip" else 6
        nets = _addr_values(r, right, family)
        name = right[1:] if isinstance(right, str) and right.startswith("@") else None
        spec = (
            Addresses(cidrs.complement(nets, family))
            if negated
            else Addresses(nets, name and set_name(name))
        )
        return Match(family=family, src=spec) if fld == "saddr" else Match(family=family, dst=spec)
    if proto == "ip" and fld == "protocol" and not negated:
        return _protocols(right, 4)
    if proto in ("tcp", "udp") and fld in ("sport", "dport"):
        spans = _port_values(r, right)
        spans = complement_ports(spans) if negated else spans
        protocol = PROTOCOLS[proto]
        return (
            Match(protocol=protocol, sport=spans)
            if fld == "sport"
            else Match(protocol=protocol, dport=spans)
        )
    if proto in ("icmp", "icmpv6") and fld == "type":
        # nft's dependency for icmp is IPv4 and for icmpv6 IPv6, not only the protocol
        family = 6 if proto == "icmpv6" else 4
        types = _icmp_values(right, proto == "icmpv6", negated)
        return Match(family=family, protocol=PROTOCOLS[proto], icmp=types)
    key = f"{proto} {fld}"
    raise _Unsupported(
        REASONS.get(key, REASONS.get(str(proto), f"{key} is not expressible in fwc"))
    )


def _match(r: _Rule, m: dict[str, Any]) -> Match | list[Match]:
    """What one match expression says: a Match, or disjoint alternatives (a protocol set)."""
    op, left, right = m.get("op", "=="), m.get("left"), m.get("right")
    if not isinstance(left, dict):
        raise SourceError(f"{r.origin}: a match without a left side")
    if "payload" in left:
        if left["payload"].get("field") == "flags" and left["payload"].get("protocol") == "tcp":
            return _flags(op, left, right)
        return _payload(r, left["payload"], op, right)
    masked = left.get("&")
    if isinstance(masked, list) and masked and masked[0] == {"payload": TCP_FLAGS}:
        return _flags(op, left, right)
    if "meta" in left:
        key = left["meta"].get("key")
        if key == "l4proto" and op == "==":
            return _protocols(right, None)
        if key == "nfproto" and op == "==" and right in ("ipv4", "ipv6"):
            return Match(family=4 if right == "ipv4" else 6)
        if key in ("iifname", "iif"):
            return _iifname(r, key, op, right)
        raise _Unsupported(REASONS.get(str(key), f"meta {key} is not expressible in fwc"))
    if "ct" in left and left["ct"].get("key") == "state":
        return _ct_state(op, right)
    kind = next(iter(left), "?")
    raise _Unsupported(REASONS.get(kind, f"a {kind} match is not expressible in fwc"))


def _ct_state(op: str, right: Any) -> Match:
    """`ct state`: a name, a list (nft's bitmask form: any of them; with `!`, none of
    them), a set `{ ... }` (any of them; with `!=`, none) or one name `==`/`!=`."""
    if isinstance(right, dict) and "|" in right and isinstance(right["|"], list):
        if len(right["|"]) != 1:
            raise _Unsupported(
                f"ct state {op} {' | '.join(map(str, right['|']))} compares with a combination "
                "of states: not expressible"
            )
        right = right["|"][0]
    items = right["set"] if isinstance(right, dict) and "set" in right else right
    items = items if isinstance(items, list) else [items]
    if not all(isinstance(i, str) for i in items) or op not in ("==", "in", "!=", "!"):
        raise _Unsupported(f"ct state {op} {json.dumps(right)} is not expressible in fwc")
    try:
        return Match(state=state_bits(items, op in ("!=", "!")))
    except StateError as exc:
        raise _Unsupported(str(exc)) from None


# iif matches the interface that had the name when the ruleset was loaded; fwc, like iifname,
# the name the interface has when the packet arrives
IIF_WARNING = "iif imported as the interface's name: fwc follows names, iif the device it found"


def _iifname(r: _Rule, key: str, op: str, right: Any) -> Match:
    items = right["set"] if isinstance(right, dict) and "set" in right else [right]
    if not all(isinstance(i, str) and i for i in items) or op not in ("==", "!="):
        raise _Unsupported(f"{key} {op} {json.dumps(right)} is not expressible in fwc")
    globs = tuple(dict.fromkeys(interface_glob(i) for i in items))
    if key == "iif":
        r.warnings.append(IIF_WARNING)
    if "*" in globs:
        return Match(iface=Interfaces(()) if op == "!=" else None)
    return Match(iface=Interfaces(excluded=globs) if op == "!=" else Interfaces(globs))


_VERDICTS: dict[str, Verdict] = {
    "accept": Verdict.ACCEPT,
    "drop": Verdict.DROP,
    "reject": Verdict.REJECT,
    "return": Verdict.RETURN,
    "jump": Verdict.JUMP,
    "goto": Verdict.GOTO,
    "continue": Verdict.CONTINUE,
}


def _rule(r: _Rule, body: dict[str, Any], text: str) -> list[Entry]:
    """The rule as entries: one, or one per alternative when it names a set of protocols
    (disjoint, so consecutive entries with the same verdict are exactly the rule)."""
    verdict, target, log = Verdict.CONTINUE, "", False
    try:
        for expr in body.get("expr", []):
            kind = next(iter(expr), "")
            if kind == "match":
                said = _match(r, expr["match"])
                r.pieces.append(said if isinstance(said, list) else [said])
            elif kind in _VERDICTS:
                verdict = _VERDICTS[kind]
                target = str(expr[kind]["target"]) if kind in ("jump", "goto") else ""
            elif kind == "log":
                log = True
            elif kind != "counter":
                raise _Unsupported(REASONS.get(kind, f"statement {kind} is not expressible in fwc"))
    except _Unsupported as exc:
        deciding = verdict is not Verdict.CONTINUE or any(
            k in e for e in body.get("expr", []) for k in _VERDICTS
        )
        return [Entry(r.origin, text, None, verdict, gap=Gap(r.origin, text, str(exc), deciding))]
    matches: list[Match] = [Match(family=r.family)]
    try:
        for piece in r.pieces:
            matches = [m for a in matches for b in piece if (m := intersect(a, b)) is not None]
    except Inexpressible as exc:
        return [Entry(r.origin, text, None, verdict, gap=Gap(r.origin, text, str(exc)))]
    warnings = (*r.warnings, *((REJECT_WARNING,) if verdict is Verdict.REJECT else ()))
    comment = str(body.get("comment", ""))
    return [
        Entry(r.origin, text, m, verdict, target, log, comment, warnings=warnings) for m in matches
    ]


def _set(body: dict[str, Any], origin: Origin) -> _NftSet:
    name, kind = str(body.get("name")), body.get("type")
    flags = body.get("flags", [])
    if kind in ("ipv4_addr", "ipv6_addr"):
        made = _NftSet(name, "addr", ())
        probe = _Rule(origin, None, {})
        made.values = _addr_values(
            probe, {"set": body.get("elem", [])}, 4 if kind == "ipv4_addr" else 6
        )
    elif kind == "inet_service":
        made = _NftSet(name, "port", ())
        made.values = _port_values(_Rule(origin, None, {}), {"set": body.get("elem", [])})
    else:
        return _NftSet(name, "?", (), f"set {name} of type {kind} is not expressible")
    if "dynamic" in flags or "timeout" in flags:
        made.unsupported = f"set {name} changes at run time (dynamic, timeout)"
    return made


def read_nft(path: str) -> Ruleset:
    try:
        doc = json.loads(Path(path).read_text(encoding="utf-8"))
        objects = doc["nftables"]
        assert isinstance(objects, list)
    except (OSError, UnicodeDecodeError) as exc:
        raise SourceError(f"{path}: cannot read: {exc}") from None
    except json.JSONDecodeError as exc:
        raise SourceError(f"{path}:{exc.lineno}: not JSON: {exc.msg}") from None
    except (KeyError, TypeError, AssertionError):
        raise SourceError(f"{path}: not `nft -j list ruleset` output (no nftables list)") from None
    return _Reader(path).read(objects)


@dataclass
class _Reader:
    path: str
    chains: dict[str, Chain] = field(default_factory=dict)
    sets: dict[tuple[str, str], dict[str, _NftSet]] = field(default_factory=dict)
    bases: list[tuple[int, int, str]] = field(default_factory=list)
    gaps: list[Gap] = field(default_factory=list)

    def origin(self, body: dict[str, Any], what: str) -> Origin:
        handle = body.get("handle", 0)
        chain = body.get("chain", body.get("name"))
        where = f"{what} handle {handle} ({body.get('family')} {body.get('table')} {chain})"
        return Origin(self.path, int(handle) if isinstance(handle, int) else 0, where)

    def read(self, objects: list[Any]) -> Ruleset:
        handlers: dict[str, Callable[[dict[str, Any]], None]] = {
            "set": self._set,
            "chain": self._chain,
            "rule": self._rule,
        }
        for k, obj in enumerate(objects):
            if not isinstance(obj, dict) or len(obj) != 1:
                raise SourceError(f"{self.path}: entry {k} of the nftables list is not one object")
            kind, body = next(iter(obj.items()))
            if kind in handlers and isinstance(body, dict):
                handlers[kind](body)
            elif kind == "map":
                self.gaps.append(
                    Gap(
                        self.origin(body, "map"),
                        f"map {body.get('name')}",
                        "maps are not expressible",
                        False,
                    )
                )
        order = [key for _, _, key in sorted(self.bases)]
        return Ruleset(self.path, self.chains, order, Match(), self.gaps)

    def _key(self, body: dict[str, Any], chain: str) -> str:
        return f"{body.get('family')} {body.get('table')} {chain}"

    def _set(self, body: dict[str, Any]) -> None:
        table = (str(body.get("family")), str(body.get("table")))
        found = _set(body, self.origin(body, "set"))
        self.sets.setdefault(table, {})[found.name] = found

    def _chain(self, body: dict[str, Any]) -> None:
        family = str(body.get("family"))
        key = self._key(body, str(body.get("name")))
        origin = self.origin(body, "chain")
        hook = body.get("hook")
        policy = body.get("policy", "accept")
        text = f"chain {key} hook {hook} priority {body.get('prio')} policy {policy}"
        if hook is None:
            self.chains[key] = Chain(key, origin)
            return
        if family not in IP_FAMILIES or hook != "input" or body.get("type", "filter") != "filter":
            effect = family in (*IP_FAMILIES, "netdev") and hook in (
                "prerouting",
                "ingress",
                "input",
            )
            kind = f"a {family} {body.get('type')} chain on hook {hook}"
            reason = f"{kind}: fwc imports filter chains on the input hook"
            self.gaps.append(Gap(origin, text, reason, effect))
            return
        policy = Verdict.DROP if body.get("policy") == "drop" else Verdict.ACCEPT
        self.chains[key] = Chain(key, origin, policy, family=IP_FAMILIES[family])
        self.bases.append((int(body.get("prio", 0)), len(self.bases), key))

    def _rule(self, body: dict[str, Any]) -> None:
        key = self._key(body, str(body.get("chain")))
        chain = self.chains.get(key)
        if chain is None:
            return  # a rule of a chain that is not imported: its chain's finding covers it
        family = IP_FAMILIES.get(str(body.get("family")))
        sets = self.sets.get((str(body.get("family")), str(body.get("table"))), {})
        origin = self.origin(body, "rule")
        text = _text(body)
        prefix = f"{body.get('family')} {body.get('table')} "
        for entry in _rule(_Rule(origin, family, sets), body, text):
            target = prefix + entry.target if entry.target else ""
            chain.entries.append(replace(entry, target=target))


def _text(body: dict[str, Any]) -> str:
    return rule_text(body)[:300]
