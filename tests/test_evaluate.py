"""The reference evaluator: table-driven cases from tests/cases/*.yaml, then properties."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import strategies
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fwc.compiler.oracle import frames as fr
from fwc.compiler.oracle.cases import Case, cases_from_document, check_rule_names
from fwc.compiler.oracle.evaluate import XDP_DROP, XDP_PASS, evaluate
from fwc.compiler.oracle.ratelimit import RateLimiter, gcra
from fwc.compiler.policy.findings import has_errors
from fwc.compiler.policy.ir import Policy
from fwc.compiler.policy.normalize import normalize
from fwc.compiler.policy.schema import validate
from fwc.compiler.policy.source import load_bytes, load_file

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
    verdict = evaluate(policy, case.frame, interface=case.interface, ct_state=case.state)
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


RATE_POLICY = {
    "default_action": "deny",
    "rules": [
        {
            "name": "limit",
            "priority": 1,
            "action": "rate_limit",
            "protocol": "udp",
            "rate_limit_pps": 2,
            "rate_limit_burst": 3,
        }
    ],
}
S = 1_000_000_000


def udp_from(src: str) -> bytes:
    return fr.build_frame(fr.fields_from_mapping({"proto": "udp", "src": src, "dport": 53}))


# (what the row shows, [(source, time in ns)], XDP action of each) at pps=2, burst=3
RATE_TABLE: list[tuple[str, list[tuple[str, int]], list[int]]] = [
    ("burst of 3, then empty", [("192.0.2.1", 0)] * 4, [XDP_PASS] * 3 + [XDP_DROP]),
    (
        "one token back every 0.5 s",
        [("192.0.2.1", 0)] * 4 + [("192.0.2.1", S // 2)] * 2,
        [XDP_PASS] * 3 + [XDP_DROP, XDP_PASS, XDP_DROP],
    ),
    (
        "1.1 s refills 2 tokens",
        [("192.0.2.1", 0)] * 3 + [("192.0.2.1", 11 * S // 10)] * 3,
        [XDP_PASS] * 5 + [XDP_DROP],
    ),
    (
        "never more than the burst",
        [("192.0.2.1", 0)] * 3 + [("192.0.2.1", 60 * S)] * 4,
        [XDP_PASS] * 6 + [XDP_DROP],
    ),
    (
        "sources apart, v6 per /128",
        [("192.0.2.1", 0)] * 4 + [("2001:db8::1", 0)] * 4 + [("2001:db8::2", 0)],
        [XDP_PASS] * 3 + [XDP_DROP] + [XDP_PASS] * 3 + [XDP_DROP, XDP_PASS],
    ),
]


@pytest.mark.parametrize(
    ("sent", "actions"), [row[1:] for row in RATE_TABLE], ids=[row[0] for row in RATE_TABLE]
)
def test_rate_limit_buckets(sent: list[tuple[str, int]], actions: list[int]) -> None:
    policy = policy_from_mapping(RATE_POLICY)
    buckets = RateLimiter()
    got = [evaluate(policy, udp_from(src), buckets=buckets, now_ns=t).xdp_action for src, t in sent]
    assert got == actions


def test_rate_limit_without_buckets_passes_and_dry_run_would_drop() -> None:
    policy = policy_from_mapping(RATE_POLICY)
    frame = udp_from("192.0.2.1")
    assert all(evaluate(policy, frame).xdp_action == XDP_PASS for _ in range(10))
    buckets = RateLimiter()
    verdicts = [evaluate(policy, frame, True, buckets, 0) for _ in range(4)]
    assert [v.xdp_action for v in verdicts] == [XDP_PASS] * 4
    assert [v.would_drop for v in verdicts] == [False] * 3 + [True]
    assert verdicts[-1].decided_by == "limit"


@pytest.mark.parametrize(
    ("pps", "burst", "interval"), [(1, 1, S), (1, 2**32 - 1, S), (3, 3, 333_333_333), (10**9, 1, 1)]
)
def test_gcra_parameters_fit_u64(pps: int, burst: int, interval: int) -> None:
    rule = policy_from_mapping(
        {"rules": [{**RATE_POLICY["rules"][0], "rate_limit_pps": pps, "rate_limit_burst": burst}]}
    ).rules[0]
    params = gcra(rule)
    assert params is not None and params.interval == interval
    assert params.tolerance == (burst - 1) * interval
    # a monotonic clock of 100 years of uptime plus the tolerance still fits a u64
    assert 100 * 365 * 86_400 * S + params.tolerance + params.interval < 2**64
