"""The reference evaluator: table-driven cases from tests/cases/*.yaml, then properties."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import strategies
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fwc.compiler import frames as fr
from fwc.compiler.cases import Case, cases_from_document, check_rule_names
from fwc.compiler.evaluate import XDP_DROP, XDP_PASS, evaluate
from fwc.compiler.findings import has_errors
from fwc.compiler.ir import Policy
from fwc.compiler.normalize import normalize
from fwc.compiler.schema import validate
from fwc.compiler.source import load_bytes, load_file

CASES_DIR = Path(__file__).parent / "cases"


def policy_from_mapping(value: dict[str, Any], name: str = "table") -> Policy:
    text = yaml.safe_dump({"name": name, **value}, sort_keys=False)
    doc, findings = load_bytes(text.encode(), f"{name}.yaml")
    assert doc is not None, findings
    assert not validate(doc)
    policy, more = normalize(doc)
    assert policy is not None and not has_errors(more), more
    return policy


def load_table(path: Path) -> tuple[Policy, list[Case]]:
    """A table file: an inline `policy:` and its `cases:` (docs/testing-policies.md)."""
    doc, findings = load_file(path)
    assert doc is not None, findings
    policy = policy_from_mapping(doc.value["policy"], path.stem)
    cases, findings = cases_from_document(doc, extra_keys=("policy",))
    findings += check_rule_names(cases, policy)
    assert not findings, [str(f.location) + " " + f.message for f in findings]
    assert all(c.rule is not None for c in cases), f"{path}: every table case names its rule"
    return policy, cases


TABLES = {path.stem: load_table(path) for path in sorted(CASES_DIR.glob("*.yaml"))}
TABLE_CASES = [
    pytest.param(table, case, id=f"{table}:{case.name}")
    for table, (_, cases) in TABLES.items()
    for case in cases
]


@pytest.mark.parametrize(("table", "case"), TABLE_CASES)
def test_table_case(table: str, case: Case) -> None:
    policy = TABLES[table][0]
    verdict = evaluate(policy, case.frame)
    assert (verdict.xdp_action, verdict.decided_by) == (case.expect, case.rule), (
        f"{case.location}: {verdict.packet}"
    )


def test_every_table_file_has_cases() -> None:
    assert set(TABLES) >= {"matching", "layer2", "ipv4", "ipv6", "layer4"}
    assert all(cases for _, cases in TABLES.values())


SLOTS_POLICY = policy_from_mapping(
    {
        "default_action": "deny",
        "rules": [
            {"name": "web", "priority": 1, "action": "allow", "protocol": "tcp",
             "destination_ports": [80]},
            {"name": "no_telnet", "priority": 2, "action": "deny", "protocol": "tcp",
             "destination_ports": [23]},
            {"name": "limited", "priority": 3, "action": "rate_limit", "protocol": "udp",
             "rate_limit_pps": 10},
        ],
    }
)  # fmt: skip

WEB = fr.build_frame(fr.fields_from_mapping({"dport": 80}))
TELNET = fr.build_frame(fr.fields_from_mapping({"dport": 23}))
OTHER = fr.build_frame(fr.fields_from_mapping({"dport": 24}))
UDP = fr.build_frame(fr.fields_from_mapping({"proto": "udp"}))
RUNT = WEB[:20]
ARP = WEB[:12] + b"\x08\x06" + WEB[14:]


@pytest.mark.parametrize(
    ("frame", "dry_run", "action", "klass", "slot", "would_drop"),
    [
        (WEB, False, XDP_PASS, "rule", 0, False),
        (TELNET, False, XDP_DROP, "rule", 1, False),
        (UDP, False, XDP_PASS, "rule", 2, False),  # rate_limit: a full bucket passes
        (OTHER, False, XDP_DROP, "default", 3, False),
        (RUNT, False, XDP_DROP, "malformed", 4, False),
        (ARP, False, XDP_PASS, "non_ip", 5, False),
        (WEB, True, XDP_PASS, "rule", 0, False),
        (TELNET, True, XDP_PASS, "rule", 1, True),
        (OTHER, True, XDP_PASS, "default", 3, True),
        (RUNT, True, XDP_PASS, "malformed", 4, True),
        (ARP, True, XDP_PASS, "non_ip", 5, False),
    ],
)
def test_counter_slots_and_dry_run(
    frame: bytes, dry_run: bool, action: int, klass: str, slot: int, would_drop: bool
) -> None:
    verdict = evaluate(SLOTS_POLICY, frame, dry_run=dry_run)
    assert (verdict.xdp_action, verdict.klass, verdict.counter_slot, verdict.would_drop) == (
        action,
        klass,
        slot,
        would_drop,
    )


def test_default_allow_passes_malformed() -> None:
    policy = policy_from_mapping({"default_action": "allow", "rules": []})
    assert evaluate(policy, RUNT).xdp_action == XDP_PASS
    assert evaluate(policy, RUNT).klass == "malformed"


_PROPERTY = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(strategies.policy_and_frames(max_rules=12, max_frames=10))
def test_never_raises_on_any_frame(drawn: tuple[Policy, list[bytes]]) -> None:
    policy, frames = drawn
    n = len(policy.rules)
    for frame in frames:
        for dry_run in (False, True):
            verdict = evaluate(policy, frame, dry_run)
            assert verdict.xdp_action in (XDP_DROP, XDP_PASS)
            assert 0 <= verdict.counter_slot <= n + 2
            assert (verdict.rule is not None) == (verdict.klass == "rule")
            if dry_run:
                assert verdict.xdp_action == XDP_PASS


@_PROPERTY
@given(st.one_of(strategies.valid_frames(), strategies.hostile_frames()), st.data())
def test_truncation_at_every_offset_never_raises(frame: bytes, data: st.DataObject) -> None:
    cut = data.draw(st.integers(0, len(frame)))
    verdict = evaluate(SLOTS_POLICY, frame[:cut])
    assert verdict.klass in ("rule", "default", "malformed", "non_ip")


@_PROPERTY
@given(strategies.packet_fields(), st.data())
def test_every_strict_prefix_of_a_built_frame_is_malformed(
    fields: fr.PacketFields, data: st.DataObject
) -> None:
    """A built frame holds exactly its IP packet, so any cut breaks a length check."""
    frame = fr.build_frame(fields)
    assert evaluate(SLOTS_POLICY, frame).klass in ("rule", "default")
    cut = data.draw(st.integers(0, len(frame) - 1))
    assert evaluate(SLOTS_POLICY, frame[:cut]).klass == "malformed"


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=128))
def test_random_bytes_never_raise(frame: bytes) -> None:
    evaluate(SLOTS_POLICY, frame)
