"""Every claim of the analyses held to the reference evaluator on random policies and frames.

Frames are drawn near the policy's rules (inside and just outside their fields), and
every example packet an analysis prints is built into a frame and evaluated too.
"""

from __future__ import annotations

from dataclasses import replace

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fwc.compiler.analysis.decide import behaviour, decide
from fwc.compiler.analysis.diff import VERDICT, diff
from fwc.compiler.analysis.index import RuleIndex
from fwc.compiler.analysis.match import UNIVERSE, packet_point
from fwc.compiler.analysis.redundancy import redundant
from fwc.compiler.analysis.region import PacketCase, example, writable
from fwc.compiler.analysis.shadow import reaches, shadowed
from fwc.compiler.analysis.space import Cube, region_overlaps
from fwc.compiler.oracle.evaluate import Verdict, evaluate
from fwc.compiler.oracle.frames import build_frame, fields_from_mapping
from fwc.compiler.policy.ir import Action, Policy
from tests.strategies import frames_for, policies

_PROPERTY = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def run(policy: Policy, packet: PacketCase) -> Verdict:
    return evaluate(policy, build_frame(fields_from_mapping(packet)))


def lands_in(cube: Cube, verdict: Verdict) -> bool:
    return region_overlaps([cube], [packet_point(verdict.packet)])


@st.composite
def policy_and_frames(draw: st.DrawFn) -> tuple[Policy, list[bytes]]:
    policy = draw(policies(1, 12, rate_limit=True))
    return policy, draw(st.lists(frames_for(policy), min_size=10, max_size=30))


@_PROPERTY
@given(policy_and_frames())
def test_every_frame_lands_in_the_part_of_its_deciding_rule(
    drawn: tuple[Policy, list[bytes]],
) -> None:
    policy, frames = drawn
    parts = decide(RuleIndex(policy), list(UNIVERSE))
    for frame in frames:
        verdict = evaluate(policy, frame)
        if verdict.packet.klass != "ip":
            continue
        point = [packet_point(verdict.packet)]
        owners = [p.rule for p in parts if region_overlaps(p.region, point)]
        assert owners == [verdict.rule]


@_PROPERTY
@given(policy_and_frames())
def test_shadowed_redundant_and_reachable_claims_hold(
    drawn: tuple[Policy, list[bytes]],
) -> None:
    policy, frames = drawn
    index = RuleIndex(policy)
    reached = reaches(index)
    found = shadowed(index, reached)
    dead = {s.rule.id for s in found}
    for i, region in enumerate(reached):
        if region:  # reachable: the example is a witness
            assert i not in dead
            assert run(policy, example(writable(region[0])[0])).rule == policy.rules[i]
    for s in found:
        if s.example is not None:
            verdict = run(policy, s.example)
            assert verdict.rule == s.example_rule
            assert verdict.rule is not None and verdict.rule.id < s.rule.id
    assert all(
        evaluate(policy, f).rule is None or evaluate(policy, f).rule.id not in dead for f in frames
    )
    for r in redundant(index, reached):
        kept = [x for x in policy.rules if x != r.rule]
        without = replace(policy, rules=tuple(replace(x, id=i) for i, x in enumerate(kept)))
        assert run(policy, r.example).rule == r.rule
        for frame in frames:
            a, b = evaluate(policy, frame), evaluate(without, frame)
            assert behaviour(policy, a.rule) == behaviour(without, b.rule)
            assert a.xdp_action == b.xdp_action


@st.composite
def policy_pairs(draw: st.DrawFn) -> tuple[Policy, Policy, list[bytes]]:
    """A policy and an edit of it: a rule dropped, moved, or given another action."""
    old = draw(policies(2, 12, rate_limit=True))
    rules = list(old.rules)
    i = draw(st.integers(0, len(rules) - 1))
    edit = draw(st.sampled_from(("drop", "move", "action")))
    if edit == "drop":
        del rules[i]
    elif edit == "move":
        rules.insert(draw(st.integers(0, len(rules) - 1)), rules.pop(i))
    else:
        flipped = Action.DENY if rules[i].action is Action.ALLOW else Action.ALLOW
        rules[i] = replace(rules[i], action=flipped, rate_limit_pps=None, rate_limit_burst=None)
    new = replace(old, rules=tuple(replace(r, id=i) for i, r in enumerate(rules)))
    frames = draw(st.lists(st.one_of(frames_for(old), frames_for(new)), min_size=10, max_size=30))
    return old, new, frames


@_PROPERTY
@given(policy_pairs())
def test_diff_regions_hold_for_examples_and_frames(
    drawn: tuple[Policy, Policy, list[bytes]],
) -> None:
    old, new, frames = drawn
    changes = diff(RuleIndex(old), RuleIndex(new))
    for change in changes:
        a, b = run(old, change.example), run(new, change.example)
        assert lands_in(change.cube, a)
        assert (a.rule, b.rule) == (change.old.rule, change.new.rule)
    for frame in frames:
        a, b = evaluate(old, frame), evaluate(new, frame)
        if a.packet.klass != "ip":
            assert a.xdp_action == b.xdp_action
            continue
        moved = behaviour(old, a.rule).action is not behaviour(new, b.rule).action
        hits = [c for c in changes if c.kind == VERDICT and lands_in(c.cube, a)]
        if moved:
            assert hits and hits[0].old.rule == a.rule and hits[0].new.rule == b.rule
        elif behaviour(old, a.rule) == behaviour(new, b.rule):
            assert not hits
