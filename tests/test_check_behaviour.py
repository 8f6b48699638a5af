"""FWC030, FWC035 and the Rego analysis regions held to the reference evaluator.

Random policies; every claim is checked on packets drawn inside the rule (or region) it
is about, and on the example packet it prints.
"""

from __future__ import annotations

import random
from dataclasses import replace

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fwc.compiler.analysis.decide import behaviour
from fwc.compiler.analysis.findings import behaviour_findings
from fwc.compiler.analysis.match import rule_cubes
from fwc.compiler.analysis.region import PacketCase, example
from fwc.compiler.analysis.review import review
from fwc.compiler.analysis.space import Cube, Intervals, Region
from fwc.compiler.analysis.verdicts import passed
from fwc.compiler.oracle.evaluate import Verdict, evaluate, failed_fields
from fwc.compiler.oracle.frames import build_frame, fields_from_mapping
from fwc.compiler.policy.findings import Severity
from fwc.compiler.policy.ir import Action, Policy
from tests.strategies import policies

_PROPERTY = settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.large_base_example,
        HealthCheck.data_too_large,
    ],
)
_INSIDE = 12  # packets drawn inside each rule or region


def run(policy: Policy, packet: PacketCase) -> Verdict:
    return evaluate(policy, build_frame(fields_from_mapping(packet)))


def _one(spans: Intervals, rnd: random.Random) -> Intervals:
    lo, hi = rnd.choice(spans)
    value = rnd.choice([lo, hi, rnd.randint(lo, hi)])
    return ((value, value),)


def _bit(mask: int, rnd: random.Random) -> int:
    bits = [i for i in range(mask.bit_length()) if mask >> i & 1]
    return 1 << rnd.choice(bits)


def inside(region: Region, rnd: random.Random) -> list[PacketCase]:
    """Packets of `region`: a random point of a random cube, `_INSIDE` times."""
    out = []
    for _ in range(_INSIDE if region else 0):
        c = rnd.choice(region)
        point = Cube(
            _bit(c.family, rnd),
            _one(c.src, rnd),
            _one(c.dst, rnd),
            _bit(c.fragment, rnd),
            _bit(c.protocol, rnd),
            _one(c.sport, rnd),
            _one(c.dport, rnd),
            _bit(c.tcp_flags, rnd),
            _bit(c.icmp_type, rnd),
        )
        out.append(example(point))
    return out


def without(policy: Policy, position: int) -> Policy:
    kept = [r for i, r in enumerate(policy.rules) if i != position]
    return replace(policy, rules=tuple(replace(r, id=i) for i, r in enumerate(kept)))


@_PROPERTY
@given(policies(1, 12, rate_limit=True), st.randoms(use_true_random=False))
def test_shadowed_and_redundant_findings_hold(policy: Policy, rnd: random.Random) -> None:
    done = review(policy)
    by_name = {rule.name: (i, rule) for i, rule in enumerate(policy.rules)}
    for finding in behaviour_findings(done):
        assert finding.rule is not None
        i, rule = by_name[finding.rule]
        mine = behaviour(policy, rule)
        packets = inside(rule_cubes(rule), rnd)
        if finding.id == "FWC030":
            cover = [by_name[r.rule][1] for r in finding.related]
            assert all(by_name[r.rule][0] < i for r in finding.related)
            deciders = []
            for packet in packets:
                verdict = run(policy, packet)
                assert verdict.rule is not None and verdict.rule.id < i  # never reached
                assert any(not failed_fields(c, verdict.packet) for c in cover)  # covered
                deciders.append(behaviour(policy, verdict.rule))
            if finding.severity is Severity.WARNING:
                assert all(b == mine for b in deciders)
            elif finding.example is not None:  # the example shows the broken intent
                verdict = run(policy, finding.example)
                assert not failed_fields(rule, verdict.packet)
                assert behaviour(policy, verdict.rule) != mine
        else:
            assert finding.id == "FWC035" and finding.example is not None
            assert run(policy, finding.example).rule == rule  # reachable
            smaller = without(policy, i)
            for packet in [finding.example, *packets]:
                a, b = run(policy, packet), run(smaller, packet)
                assert behaviour(policy, a.rule) == behaviour(smaller, b.rule)
                assert a.xdp_action == b.xdp_action


@_PROPERTY
@given(policies(1, 12, rate_limit=True), st.randoms(use_true_random=False))
def test_passed_regions_hold(policy: Policy, rnd: random.Random) -> None:
    """Every packet of an analysis region gets the region's action from one of its rules."""
    done = review(policy)
    for part in passed(done.index, done.reached):
        names = {name or "default" for name in part.rules}
        for packet in inside([part.cube], rnd):
            verdict = run(policy, packet)
            decided_by = verdict.rule.name if verdict.rule is not None else "default"
            assert decided_by in names
            assert behaviour(policy, verdict.rule).action is part.action
            assert part.action is not Action.DENY
