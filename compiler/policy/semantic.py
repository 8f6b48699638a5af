"""Checks a schema-valid policy for mistakes the schema cannot express (FWC020, FWC023-028,
FWC036, FWC038-039)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from fwc.compiler.policy.findings import Finding, error, warning
from fwc.compiler.policy.globs import Selection, pattern_problem, realisable
from fwc.compiler.policy.source import Document, NodePath

_PORT_KEYS = ("source_ports", "destination_ports")
_RATE_KEYS = ("rate_limit_pps", "rate_limit_burst")


def check(doc: Document, partial: frozenset[int] = frozenset()) -> list[Finding]:
    """Every semantic finding of a document that passed the schema, or of the readable part
    of one that did not (`partial`: rules that lost a key, skipped by the per-rule checks,
    which read several keys together)."""
    rules = _rules(doc)
    findings: list[Finding] = []
    for rule_check in RULE_CHECKS:
        for index, raw in rules:
            if index not in partial:
                findings.extend(rule_check(doc, index, raw))
    findings.extend(_duplicate_names(doc, rules))
    findings.extend(_equal_priorities(doc, rules))
    return findings


def _rules(doc: Document) -> list[tuple[int, dict[str, Any]]]:
    value = doc.value if isinstance(doc.value, dict) else {}
    raw = value.get("rules")
    if not isinstance(raw, list):
        return []
    return [(i, r) for i, r in enumerate(raw) if isinstance(r, dict)]


def _name(raw: dict[str, Any]) -> str | None:
    name = raw.get("name")
    return name if isinstance(name, str) else None


def _at(index: int, *rest: str | int) -> NodePath:
    return ("rules", index, *rest)


def _ports_on_portless(doc: Document, index: int, raw: dict[str, Any]) -> Iterator[Finding]:
    protocol = raw.get("protocol", "any")
    if protocol not in ("icmp", "icmpv6"):
        return
    for key in _PORT_KEYS:
        if raw.get(key):
            yield error(
                "FWC023",
                f"rule `{_name(raw)}` sets `{key}`, but {protocol} has no ports",
                doc.key_where(_at(index, key)),
                _name(raw),
            )


def _flags_on_non_tcp(doc: Document, index: int, raw: dict[str, Any]) -> Iterator[Finding]:
    protocol = raw.get("protocol", "any")
    if "tcp_flags" in raw and protocol != "tcp":
        yield error(
            "FWC024",
            f"rule `{_name(raw)}` sets `tcp_flags`, but its protocol is {protocol}; "
            "tcp_flags needs `protocol: tcp`",
            doc.key_where(_at(index, "tcp_flags")),
            _name(raw),
        )


def _icmp_on_tcp_udp(doc: Document, index: int, raw: dict[str, Any]) -> Iterator[Finding]:
    protocol = raw.get("protocol", "any")
    if raw.get("icmp_types") and protocol in ("tcp", "udp"):
        yield error(
            "FWC025",
            f"rule `{_name(raw)}` sets `icmp_types`, but its protocol is {protocol}",
            doc.key_where(_at(index, "icmp_types")),
            _name(raw),
        )


def _rate_limit(doc: Document, index: int, raw: dict[str, Any]) -> Iterator[Finding]:
    name = _name(raw)
    action = raw.get("action", "deny")
    if action == "rate_limit":
        if "rate_limit_pps" not in raw:
            yield error(
                "FWC026",
                f"rule `{name}` has `action: rate_limit` but no `rate_limit_pps`",
                doc.key_where(_at(index, "action")),
                name,
            )
        burst = raw.get("rate_limit_burst")
        if isinstance(burst, int) and burst < 1:
            yield error(
                "FWC026",
                f"rule `{name}` has `rate_limit_burst: {burst}`; a bucket must hold at least 1",
                doc.where(_at(index, "rate_limit_burst")),
                name,
            )
        return
    for key in _RATE_KEYS:
        if key in raw:
            yield error(
                "FWC026",
                f"rule `{name}` sets `{key}`, but its action is {action}, not rate_limit",
                doc.key_where(_at(index, key)),
                name,
            )


def _interfaces(doc: Document, index: int, raw: dict[str, Any]) -> Iterator[Finding]:
    entries = raw.get("interfaces")
    if not isinstance(entries, list):
        return
    selection = _selection(doc)
    for i, entry in enumerate(entries):
        if not isinstance(entry, str):
            continue
        pattern = entry[1:] if entry.startswith("!") else entry
        problem = pattern_problem(pattern)
        if problem is not None:
            yield error(
                "FWC038",
                f"rule `{_name(raw)}`: {problem}",
                doc.where(_at(index, "interfaces", i)),
                _name(raw),
            )
        elif selection is not None and (0,) not in realisable((pattern,), selection):
            yield warning(
                "FWC039",
                f"rule `{_name(raw)}` names interfaces {entry!r}, but no interface the "
                f"policy attaches to ({_attached_text(selection)}) matches it",
                doc.where(_at(index, "interfaces", i)),
                _name(raw),
            )


# ICMP errors have a connection state (docs/semantics.md#connection-state); other ICMP types
# do not. The kernel gives an error `related` or `invalid`, a TCP or UDP packet never `invalid`.
_ICMP_ERRORS = {"icmp": (3, 4, 5, 11, 12), "icmpv6": (1, 2, 3, 4)}
_ERROR_STATES = ("related", "invalid")


def _state(doc: Document, index: int, raw: dict[str, Any]) -> Iterator[Finding]:
    states = raw.get("state")
    if not isinstance(states, list) or not states:
        return
    protocol = raw.get("protocol", "any")
    name = _name(raw)
    types = raw.get("icmp_types") or []
    listed = ", ".join(str(s) for s in states)
    why = None
    if protocol in _ICMP_ERRORS:
        errors = _ICMP_ERRORS[protocol]
        if types and not any(t in errors for t in types):
            shown = ", ".join(str(t) for t in types)
            why = (
                f"its ICMP types ({shown}) are not errors, and only an ICMP error quoting a "
                "TCP or UDP packet has a connection state"
            )
        elif not any(s in _ERROR_STATES for s in states):
            why = (
                f"its {protocol} packets are either untracked or ICMP errors, which are "
                "only ever related or invalid"
            )
    elif protocol in ("tcp", "udp") and all(s == "invalid" for s in states):
        why = f"fwc never finds a {protocol} packet invalid (it does no window tracking)"
    if why is not None:
        yield warning(
            "FWC036",
            f"rule `{name}` has `state: [{listed}]`, but {why}: the rule never matches",
            doc.key_where(_at(index, "state")),
            name,
        )


def _selection(doc: Document) -> Selection | None:
    """The policy's `interfaces` selection, or None when it is not readable."""
    value = doc.value if isinstance(doc.value, dict) else {}
    raw = value.get("interfaces") or {}
    if not isinstance(raw, dict):
        return None
    include, exclude = raw.get("include") or [], raw.get("exclude") or []
    if not isinstance(include, list) or not isinstance(exclude, list):
        return None
    globs = [*include, *exclude]
    if not all(isinstance(g, str) and pattern_problem(g) is None for g in globs):
        return None
    return Selection(tuple(include), tuple(exclude))


def _attached_text(selection: Selection) -> str:
    words = [f"include {list(selection.include)}" if selection.include else "every interface"]
    if selection.exclude:
        words.append(f"exclude {list(selection.exclude)}")
    if "lo" not in selection.include:
        words.append("never lo unless included by name")
    return ", ".join(words)


RuleCheck = Callable[[Document, int, dict[str, Any]], Iterator[Finding]]

RULE_CHECKS: tuple[RuleCheck, ...] = (
    _ports_on_portless,
    _flags_on_non_tcp,
    _icmp_on_tcp_udp,
    _rate_limit,
    _interfaces,
    _state,
)


def _duplicate_names(doc: Document, rules: list[tuple[int, dict[str, Any]]]) -> Iterator[Finding]:
    first: dict[str, int] = {}
    for index, raw in rules:
        name = _name(raw)
        if name is None:
            continue
        if name in first:
            line = doc.where(_at(first[name])).line
            yield error(
                "FWC020",
                f"rule name `{name}` is already used by the rule at line {line}; "
                "names must be unique (counters are keyed by name)",
                doc.where(_at(index, "name")),
                name,
            )
        else:
            first[name] = index


def _equal_priorities(doc: Document, rules: list[tuple[int, dict[str, Any]]]) -> Iterator[Finding]:
    first: dict[int, tuple[int, str | None]] = {}
    for index, raw in rules:
        priority = raw.get("priority")
        if not isinstance(priority, int) or isinstance(priority, bool):
            continue
        if priority in first:
            other_index, other_name = first[priority]
            line = doc.where(_at(other_index)).line
            yield warning(
                "FWC028",
                f"rule `{_name(raw)}` has priority {priority}, like rule `{other_name}` "
                f"(line {line}); equal priorities keep file order, which is easy to break",
                doc.where(_at(index, "priority")),
                _name(raw),
            )
        else:
            first[priority] = (index, _name(raw))
