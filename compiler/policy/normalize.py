"""Turns a schema-valid policy document into the IR: sets expanded, rules in evaluation order."""

from __future__ import annotations

import ipaddress
import re
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from fwc.artifact import names
from fwc.compiler.policy.findings import Finding, error, has_errors, warning
from fwc.compiler.policy.ir import (
    CT_STATES,
    TCP_FLAGS,
    Action,
    AddressRange,
    Family,
    InterfaceSelection,
    Policy,
    PortRange,
    Protocol,
    Rule,
    SetEntries,
)
from fwc.compiler.policy.source import Document, NodePath

_Entry = TypeVar("_Entry", AddressRange, PortRange)

_PORT_RANGE = re.compile(r"\s*(\d{1,5})\s*-\s*(\d{1,5})\s*")
_PORT = re.compile(r"\s*(\d{1,5})\s*")
_PACKED = {4: (Family.IPV4, 32), 16: (Family.IPV6, 128)}


def normalize(doc: Document) -> tuple[Policy | None, list[Finding]]:
    """The IR of `doc`, or None when the document has errors that stop normalization."""
    return _Normalizer(doc).run()


def _parse_plain(text: str) -> tuple[AddressRange, bool] | None:
    """The common spellings, "a.b.c.d[/n]" and "x:y::z[/n]", parsed by the C library
    (blocklists hold a million of them); None sends anything else to `ipaddress`."""
    address, slash, length = text.partition("/")
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    try:
        packed = socket.inet_pton(family, address)
    except (OSError, ValueError):  # ValueError: an embedded NUL, which C strings cannot hold
        return None
    fam, width = _PACKED[len(packed)]
    if not slash:
        prefix = width
    elif length.isascii() and length.isdigit() and len(length) <= 3:
        prefix = int(length)
        if prefix > width:
            return None
    else:
        return None
    value = int.from_bytes(packed, "big")
    host = (1 << (width - prefix)) - 1
    return AddressRange(fam, value & ~host, prefix), value & host != 0


def parse_address(text: str) -> tuple[AddressRange, bool] | None:
    """A CIDR or bare address, and whether host bits were set under the mask."""
    text = text.strip()
    plain = _parse_plain(text)
    return plain if plain is not None else parse_any_address(text)


def parse_any_address(text: str) -> tuple[AddressRange, bool] | None:
    """`parse_address` by `ipaddress` alone: every spelling it takes (netmasks, scopes)."""
    try:
        iface = ipaddress.ip_interface(text)
    except ValueError:
        return None
    net = iface.network
    family = Family.IPV4 if net.version == 4 else Family.IPV6
    host_bits = int(iface.ip) != int(net.network_address)
    return AddressRange(family, int(net.network_address), net.prefixlen), host_bits


def parse_port(value: object) -> PortRange | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return PortRange(value, value) if 0 <= value <= 65535 else None
    if not isinstance(value, str):
        return None
    m = _PORT_RANGE.fullmatch(value) or _PORT.fullmatch(value)
    if m is None:
        return None
    lo = int(m.group(1))
    hi = int(m.group(m.lastindex or 1))
    if lo > hi or hi > 65535:
        return None
    return PortRange(lo, hi)


def parse_tcp_flags(text: str) -> tuple[int, int] | str:
    """(must-set, must-clear) bits, or a message saying what is wrong."""
    set_bits = clear_bits = 0
    for raw in text.split(","):
        word = raw.strip().upper()
        negate = word.startswith("!")
        word = word[1:].strip() if negate else word
        bit = TCP_FLAGS.get(word)
        if bit is None:
            known = " ".join(TCP_FLAGS)
            return f"unknown TCP flag '{raw.strip()}' (known: {known}, each optionally with !)"
        if (set_bits | clear_bits) & bit:
            return f"TCP flag {word} is named twice"
        if negate:
            clear_bits |= bit
        else:
            set_bits |= bit
    return set_bits, clear_bits


def _is_port_entry(value: object) -> bool:
    return (isinstance(value, int) and not isinstance(value, bool)) or (
        isinstance(value, str) and bool(_PORT_RANGE.fullmatch(value) or _PORT.fullmatch(value))
    )


def _set_names(entries: object) -> tuple[str, ...]:
    """The sets an address field names, in order, each once."""
    if not isinstance(entries, list):
        return ()
    return tuple(dict.fromkeys(e[1:] for e in entries if type(e) is str and e.startswith("$")))


class _Normalizer:
    def __init__(self, doc: Document) -> None:
        self.doc = doc
        self.findings: list[Finding] = []
        self.sets: dict[str, SetEntries] = {}
        self.rule_name: str | None = None  # the rule being built, named in its findings
        self.unreadable_sets = 0  # references to declared sets that are broken

    def run(self) -> tuple[Policy | None, list[Finding]]:
        value = self.doc.value
        if not isinstance(value, dict):
            return None, self.findings
        name = self.policy_name(value)
        self.read_sets(value.get("sets") or {})
        rules: list[tuple[int, int, dict[str, Any]]] = []
        for index, raw in enumerate(value.get("rules") or []):
            if isinstance(raw, dict):
                rules.append((int(raw.get("priority", 0)), index, raw))
        rules.sort(key=lambda item: (item[0], item[1]))
        built = [self.rule(rule_id, index, raw) for rule_id, (_, index, raw) in enumerate(rules)]
        interfaces = value.get("interfaces") or {}
        policy = Policy(
            name=name or "",
            default_action=Action(value.get("default_action", "deny")),
            rules=tuple(built),
            interfaces=InterfaceSelection(
                include=tuple(str(g) for g in interfaces.get("include") or ()),
                exclude=tuple(str(g) for g in interfaces.get("exclude") or ()),
            ),
            sets=tuple(self.sets.items()),
            source_file=self.doc.file,
            source_sha256=self.doc.sha256,
        )
        if has_errors(self.findings) or name is None:
            return None, self.findings
        return policy, self.findings

    def policy_name(self, value: dict[str, Any]) -> str | None:
        if "name" in value:
            return str(value["name"])
        stem = Path(self.doc.file).stem
        if names.is_policy_name(stem):
            return stem
        self.findings.append(
            error(
                "FWC033",
                f"the policy has no `name:` and its file name '{stem}' is not a valid policy "
                f"name ({names.WORDS}); add a `name:`",
                self.doc.where(()),
            )
        )
        return None

    def read_sets(self, sets: dict[str, Any]) -> None:
        for set_name, entries in sets.items():
            path: NodePath = ("sets", set_name)
            if not isinstance(entries, list):
                continue
            # "." or ":" make an address: the test that spares a million regex matches.
            kinds = {
                "address"
                if type(e) is str and ("." in e or ":" in e)
                else "port"
                if _is_port_entry(e)
                else "address"
                for e in entries
            }
            if len(kinds) > 1:
                self.findings.append(
                    error(
                        "FWC022",
                        f"set `{set_name}` mixes addresses and ports; a set holds one kind",
                        self.doc.key_where(path),
                    )
                )
                continue
            if kinds == {"port"}:
                self.sets[set_name] = tuple(self.ports(entries, path, expand_sets=False))
            else:
                self.sets[set_name] = tuple(self.addresses(entries, path, expand_sets=False))

    def expand(self, entry: str, path: NodePath, want: type) -> list[Any] | None:
        set_name = entry[1:]
        if set_name not in self.sets:
            declared = self.doc.value.get("sets") or {}
            if set_name in declared:
                self.unreadable_sets += 1
                return []  # the set itself is broken and already reported
            self.findings.append(
                error(
                    "FWC021",
                    f"set `${set_name}` is not defined",
                    self.doc.where(path),
                    self.rule_name,
                )
            )
            return None
        values = list(self.sets[set_name])
        if values and not isinstance(values[0], want):
            have, takes = ("ports", "addresses") if want is AddressRange else ("addresses", "ports")
            self.findings.append(
                error(
                    "FWC031",
                    f"set `${set_name}` holds {have}, but this field takes {takes}",
                    self.doc.where(path),
                    self.rule_name,
                )
            )
            return None
        return values

    def addresses(
        self, entries: list[Any], path: NodePath, expand_sets: bool = True
    ) -> list[AddressRange]:
        out: list[AddressRange] = []
        for i, entry in enumerate(entries):
            text = entry if type(entry) is str else str(entry)
            if text.startswith("$"):
                where = (*path, i)
                if expand_sets:
                    out.extend(self.expand(text, where, AddressRange) or [])
                else:
                    self.findings.append(
                        error("FWC031", "a set cannot refer to another set", self.doc.where(where))
                    )
                continue
            parsed = _parse_plain(text) or parse_address(text)
            if parsed is None:
                self.findings.append(
                    error(
                        "FWC029",
                        f"'{text}' is not an IPv4 or IPv6 address or CIDR",
                        self.doc.where((*path, i)),
                        self.rule_name,
                    )
                )
                continue
            address, host_bits = parsed
            if host_bits:
                self.findings.append(
                    warning(
                        "FWC027",
                        f"'{text}' has host bits set under the mask; {address} is used",
                        self.doc.where((*path, i)),
                        self.rule_name,
                    )
                )
            out.append(address)
        return out

    def ports(
        self, entries: list[Any], path: NodePath, expand_sets: bool = True
    ) -> list[PortRange]:
        out: list[PortRange] = []
        for i, entry in enumerate(entries):
            where = (*path, i)
            if isinstance(entry, str) and entry.startswith("$"):
                if expand_sets:
                    out.extend(self.expand(entry, where, PortRange) or [])
                else:
                    self.findings.append(
                        error("FWC031", "a set cannot refer to another set", self.doc.where(where))
                    )
                continue
            port = parse_port(entry)
            if port is None:
                self.findings.append(
                    error(
                        "FWC029",
                        f"{entry!r} is not a port (0..65535) or a range 'lo-hi' with lo <= hi",
                        self.doc.where(where),
                        self.rule_name,
                    )
                )
                continue
            out.append(port)
        return out

    def field(
        self,
        raw: dict[str, Any],
        path: NodePath,
        key: str,
        read: Callable[[list[Any], NodePath], list[_Entry]],
    ) -> tuple[_Entry, ...]:
        """One address or port field, expanded; an empty list means "any" to the matcher,
        so a list that only names empty sets must not silently become "any"."""
        entries = raw.get(key)
        if not entries:
            return ()
        before = len(self.findings)
        unreadable = self.unreadable_sets
        values = read(entries, (*path, key))
        if (
            not values
            and not has_errors(self.findings[before:])
            and unreadable == self.unreadable_sets
        ):
            self.findings.append(
                error(
                    "FWC034",
                    f"`{key}` names only empty sets; an empty list would match every "
                    "address or port, so list something or drop the field",
                    self.doc.where((*path, key)),
                    self.rule_name,
                )
            )
        return tuple(values)

    def rule(self, rule_id: int, index: int, raw: dict[str, Any]) -> Rule:
        path: NodePath = ("rules", index)
        name = str(raw.get("name", f"rule_{index}"))
        self.rule_name = name
        set_bits = clear_bits = 0
        flags = raw.get("tcp_flags")
        if isinstance(flags, str):
            parsed = parse_tcp_flags(flags)
            if isinstance(parsed, str):
                self.findings.append(
                    error("FWC032", parsed, self.doc.where((*path, "tcp_flags")), name)
                )
            else:
                set_bits, clear_bits = parsed
        action = Action(raw.get("action", "deny"))
        globs = [str(g) for g in raw.get("interfaces") or ()]
        pps = raw.get("rate_limit_pps")
        burst = raw.get("rate_limit_burst", pps)
        return Rule(
            id=rule_id,
            name=name,
            priority=int(raw.get("priority", 0)),
            action=action,
            protocol=Protocol(raw.get("protocol", "any")),
            sources=self.field(raw, path, "source_cidrs", self.addresses),
            destinations=self.field(raw, path, "destination_cidrs", self.addresses),
            source_ports=self.field(raw, path, "source_ports", self.ports),
            destination_ports=self.field(raw, path, "destination_ports", self.ports),
            tcp_flags_set=set_bits,
            tcp_flags_clear=clear_bits,
            icmp_types=tuple(int(t) for t in raw.get("icmp_types") or ()),
            rate_limit_pps=int(pps) if isinstance(pps, int) else None,
            rate_limit_burst=int(burst) if isinstance(burst, int) else None,
            log=bool(raw.get("log", False)),
            description=str(raw.get("description", "")),
            location=self.doc.where(path),
            interfaces=tuple(dict.fromkeys(g for g in globs if not g.startswith("!"))),
            not_interfaces=tuple(dict.fromkeys(g[1:] for g in globs if g.startswith("!"))),
            ct_states=sum(CT_STATES.get(str(s), 0) for s in dict.fromkeys(raw.get("state") or ())),
            source_sets=_set_names(raw.get("source_cidrs")),
            destination_sets=_set_names(raw.get("destination_cidrs")),
        )
