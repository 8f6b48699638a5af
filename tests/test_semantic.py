"""Semantic checks: one table row per mistake the schema cannot see."""

from __future__ import annotations

import pytest

from fwc.compiler.policy import schema, semantic
from fwc.compiler.policy.source import load_bytes


def rule(**fields: object) -> str:
    lines = [f"  - name: {fields.pop('name', 'r')}", f"    priority: {fields.pop('priority', 10)}"]
    lines += [f"    {k}: {v}" for k, v in fields.items()]
    return "\n".join(lines) + "\n"


def check(rules: str) -> list[tuple[str, str, int, str | None]]:
    doc, loaded = load_bytes(("name: sem\nrules:\n" + rules).encode(), "s.yaml")
    assert loaded == [] and doc is not None
    assert schema.validate(doc) == []
    return [
        (f.id, f.severity.value, f.location.line, f.rule)
        for f in sorted(semantic.check(doc), key=lambda f: f.sort_key())
    ]


@pytest.mark.parametrize(
    ("rules", "expected"),
    [
        (rule(protocol="tcp", destination_ports="[22]"), []),
        (rule(protocol="icmp", destination_ports="[8]"), [("FWC023", "error", 6, "r")]),
        (rule(protocol="icmpv6", source_ports="[1]"), [("FWC023", "error", 6, "r")]),
        (rule(protocol="icmp", destination_ports="[]"), []),
        (rule(destination_ports="[53]"), []),
        (rule(protocol="tcp", tcp_flags='"SYN"'), []),
        (rule(protocol="udp", tcp_flags='"SYN"'), [("FWC024", "error", 6, "r")]),
        (rule(tcp_flags='"SYN"'), [("FWC024", "error", 5, "r")]),
        (rule(protocol="icmp", icmp_types="[8]"), []),
        (rule(icmp_types="[8]"), []),
        (rule(protocol="tcp", icmp_types="[8]"), [("FWC025", "error", 6, "r")]),
        (rule(interfaces='["eth0", "!wg*", "e[0-9]"]'), []),
        # without an include that names it, loopback is never attached
        (rule(interfaces='["lo"]'), [("FWC039", "warning", 5, "r")]),
        (rule(interfaces='["eth/0"]'), [("FWC038", "error", 5, "r")]),
        (rule(interfaces='["!bad:name"]'), [("FWC038", "error", 5, "r")]),
        (rule(interfaces='["sixteen-chars-xx"]'), [("FWC038", "error", 5, "r")]),
        (rule(interfaces='["*sixteen-chars-xx"]'), [("FWC038", "error", 5, "r")]),
        (rule(interfaces='["fifteen-chars-x*"]'), []),
        (rule(interfaces='["."]'), [("FWC039", "warning", 5, "r")]),
        (rule(protocol="udp", icmp_types="[8]"), [("FWC025", "error", 6, "r")]),
        (rule(state="[established, related]"), []),
        (rule(protocol="tcp", state="[new]"), []),
        (rule(protocol="tcp", state="[invalid]"), [("FWC036", "warning", 6, "r")]),
        (rule(protocol="udp", state="[invalid, new]"), []),
        (rule(state="[invalid]"), []),
        (rule(protocol="icmp", icmp_types="[8]", state="[new]"), [("FWC036", "warning", 7, "r")]),
        (rule(protocol="icmp", icmp_types="[3, 8]", state="[related]"), []),
        (rule(protocol="icmp", state="[established]"), [("FWC036", "warning", 6, "r")]),
        (rule(protocol="icmpv6", icmp_types="[2]", state="[invalid]"), []),
        (rule(protocol="icmpv6", icmp_types="[3]", state="[new]"), [("FWC036", "warning", 7, "r")]),
        (rule(action="rate_limit", rate_limit_pps=10), []),
        (rule(action="rate_limit", rate_limit_pps=10, rate_limit_burst=20), []),
        (rule(action="rate_limit"), [("FWC026", "error", 5, "r")]),
        (
            rule(action="rate_limit", rate_limit_pps=5, rate_limit_burst=0),
            [("FWC026", "error", 7, "r")],
        ),
        (rule(action="allow", rate_limit_pps=5), [("FWC026", "error", 6, "r")]),
        (rule(rate_limit_burst=5), [("FWC026", "error", 5, "r")]),
        (rule(name="a") + rule(name="b"), [("FWC028", "warning", 6, "b")]),
        (rule(name="a") + rule(name="a", priority=20), [("FWC020", "error", 5, "a")]),
        (
            rule(name="a") + rule(name="a"),
            [("FWC020", "error", 5, "a"), ("FWC028", "warning", 6, "a")],
        ),
        (
            rule(name="a") + rule(name="b", priority=5) + rule(name="c"),
            [("FWC028", "warning", 8, "c")],
        ),
    ],
)
def test_semantic_table(rules: str, expected: list[tuple[str, str, int, str | None]]) -> None:
    assert check(rules) == expected


def test_equal_priority_warning_names_both_rules_and_lines() -> None:
    doc, _ = load_bytes(("rules:\n" + rule(name="first") + rule(name="second")).encode(), "s.yaml")
    assert doc is not None
    (finding,) = semantic.check(doc)
    assert "`second`" in finding.message and "`first` (line 2)" in finding.message
    assert finding.location.line == 5


def test_duplicate_name_message_points_at_the_first() -> None:
    doc, _ = load_bytes(
        ("rules:\n" + rule(name="x") + rule(name="x", priority=2)).encode(), "s.yaml"
    )
    assert doc is not None
    (finding,) = semantic.check(doc)
    assert "line 2" in finding.message
