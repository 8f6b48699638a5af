"""The planner: strategy choice, refusals, and the rule tests the constants strategy emits."""

from __future__ import annotations

import dataclasses

import pytest

from fwc.compiler.backend import constants
from fwc.compiler.backend.constants import Condition
from fwc.compiler.backend.plan import (
    PROGRAM_NAME_LEN,
    TABLES_FROM_RULES,
    PlanError,
    choose_strategy,
    counter_slots,
    make_plan,
    plan_findings,
    program_name,
)
from fwc.compiler.policy.ir import PortRange
from tests.bigpolicy import big_policy
from tests.compile_helpers import one_rule, policy_of

BASE = "{name: r, priority: 1, action: allow"


def kinds(rule: str) -> list[tuple[str, object]]:
    block = make_plan(one_rule(rule), "constants", False).program.rules[0]
    return [(t.kind, _value(t)) for t in block.tests]


def _value(t: Condition) -> object:
    if t.kind in ("proto", "icmp"):
        return t.values
    if t.kind == "ports":
        return (t.field, tuple(str(r) for r in t.ranges))
    if t.kind == "addr":
        return (t.field, len(t.v4), len(t.v6))
    if t.kind == "tcp_flags":
        return (t.mask, t.want)
    return None


@pytest.mark.parametrize(
    ("rule", "expected"),
    [
        (BASE + "}", []),
        (BASE + ", protocol: udp}", [("proto", (17,))]),
        (
            BASE + ", destination_ports: [80, 81, '82-90', 443]}",
            [("proto", (6, 17)), ("l4", None), ("ports", ("dport", ("80-90", "443")))],
        ),
        (BASE + ", protocol: tcp, source_ports: ['0-65535']}", [("proto", (6,)), ("l4", None)]),
        (
            BASE + ", protocol: tcp, tcp_flags: 'SYN,!ACK'}",
            [("proto", (6,)), ("l4", None), ("tcp_flags", (0x12, 0x02))],
        ),
        (
            BASE + ", icmp_types: [8, 0, 8]}",
            [("proto", (1, 58)), ("l4", None), ("icmp", (0, 8))],
        ),
        (
            BASE + ", source_cidrs: ['10.0.0.0/8', '0.0.0.0/0', 'fd00::/8']}",
            [("addr", ("src", 1, 1))],
        ),
        (
            BASE + ", destination_cidrs: ['192.0.2.0/24', '192.0.2.0/24']}",
            [("addr", ("dst", 1, 0))],
        ),
    ],
)
def test_rule_tests(rule: str, expected: list[tuple[str, object]]) -> None:
    assert kinds(rule) == expected


def test_ipv6_masks_split_into_halves() -> None:
    policy = one_rule(BASE + ", source_cidrs: ['2001:db8::/32', 'fd00::1:0/112']}")
    test = make_plan(policy, "constants", False).program.rules[0].tests[0]
    short, long = test.v6
    assert (short.mask_hi, short.mask_lo) == (0xFFFFFFFF00000000, 0)
    assert short.net_hi == 0x20010DB800000000
    assert (long.mask_hi, long.mask_lo) == (2**64 - 1, 0xFFFFFFFFFFFF0000)
    assert (long.net_hi, long.net_lo) == (0xFD00000000000000, 0x10000)


@pytest.mark.parametrize(
    "rule",
    [
        BASE + ", log: true}",
        "{name: r, priority: 1, action: rate_limit, rate_limit_pps: 10, protocol: udp}",
    ],
)
def test_rate_limit_and_log_compile_with_constants_only(rule: str) -> None:
    policy = one_rule(rule)
    assert plan_findings(policy, "constants") == []
    found = plan_findings(policy, "tables")
    assert [f.id for f in found] == ["FWC050"] and found[0].rule == "r"
    with pytest.raises(PlanError):
        make_plan(policy, "tables", False)
    assert make_plan(policy, "auto", False).strategy == "constants"


def test_too_large_policy_is_refused_cleanly() -> None:
    policy = big_policy(1300)
    assert constants.estimated_insns(policy) > constants.MAX_INSNS
    assert [f.id for f in plan_findings(policy, "constants")] == ["FWC051"]
    assert choose_strategy(policy, "auto") == "tables"


def test_thousand_rules_fit_the_constants_strategy() -> None:
    policy = big_policy(1000)
    assert plan_findings(policy, "constants") == []
    # ...but from TABLES_FROM_RULES on, auto takes the faster tables strategy
    assert choose_strategy(policy, "auto") == "tables"


def test_auto_takes_constants_for_small_policies() -> None:
    assert choose_strategy(big_policy(TABLES_FROM_RULES - 1), "auto") == "constants"
    assert choose_strategy(big_policy(TABLES_FROM_RULES), "auto") == "tables"


def test_unknown_strategy_is_a_finding() -> None:
    found = plan_findings(one_rule(BASE + "}"), "quantum")
    assert [f.id for f in found] == ["FWC050"]


def test_explicit_strategy_wins() -> None:
    assert choose_strategy(one_rule(BASE + "}"), "tables") == "tables"


def test_counter_slots_follow_the_artifact_contract() -> None:
    policy = policy_of("name: t\nrules:\n  - {name: b, priority: 2}\n  - {name: a, priority: 1}\n")
    assert counter_slots(policy) == (
        "rule:a",
        "rule:b",
        "default",
        "malformed",
        "non_ip",
        "would_drop",
    )
    plan = make_plan(policy, "constants", True)
    assert plan.dry_run and plan.program.dry_run
    assert plan.program.slot_would_drop == 5
    assert [(m.name, m.max_entries) for m in plan.maps] == [("fwc_counters", 6), ("fwc_scratch", 1)]


def test_port_ranges_merge() -> None:
    merged = constants._merge_ports((PortRange(5, 9), PortRange(1, 4), PortRange(20, 30)))
    assert merged == (PortRange(1, 9), PortRange(20, 30))


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("edge-web", "fwc_edge_web"),
        ("tutorial-host", "fwc_tutorial_ho"),
        ("Edge Web/2", "fwc_edge_web_2"),
        ("ÄÖ", "fwc_xdp"),
        ("counters", "fwc_xdp"),
        ("scratch", "fwc_xdp"),
        ("gen", "fwc_xdp"),
    ],
)
def test_program_name_fits_the_kernel_and_clashes_with_nothing(name: str, expected: str) -> None:
    policy = dataclasses.replace(policy_of("name: t\nrules: []\n"), name=name)
    assert program_name(policy) == expected
    assert len(program_name(policy)) <= PROGRAM_NAME_LEN
    assert make_plan(policy, "constants", False).program_name == expected
