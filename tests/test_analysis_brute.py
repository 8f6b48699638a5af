"""The analyses against brute force over every packet of a reduced header space.

Rules draw addresses, ports, flags and ICMP types from a few values, so a handful of
packets per field (each value, plus one value no rule names) stands for every class
of packets: checking them all checks every packet there is.
"""

from __future__ import annotations

import itertools
from dataclasses import replace
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fwc.compiler.analysis.decide import decide
from fwc.compiler.analysis.diff import VERDICT, diff
from fwc.compiler.analysis.index import RuleIndex
from fwc.compiler.analysis.match import UNIVERSE, Selection, packet_point
from fwc.compiler.analysis.prove import prove
from fwc.compiler.analysis.redundancy import redundant
from fwc.compiler.analysis.shadow import shadowed
from fwc.compiler.analysis.space import Region, region_overlaps
from fwc.compiler.oracle.evaluate import failed_fields
from fwc.compiler.oracle.packet import Packet
from fwc.compiler.policy.ir import Action, Family, Policy, Rule
from tests.strategies import policy_from_document

_V4 = ["10.0.0.0/31", "10.0.0.0/32", "10.0.0.1/32"]
_V6 = ["2001:db8::/127", "2001:db8::1/128"]
_ADDRESSES = {
    Family.IPV4: [0x0A000000, 0x0A000001, 0x0B000000],
    Family.IPV6: [0x20010DB8 << 96, (0x20010DB8 << 96) | 1, 0x20010DB9 << 96],
}
_PORTS = [0, 1, 2]
_FLAGS = [f | s | a for f in (0, 0x01) for s in (0, 0x02) for a in (0, 0x10)]
_ICMP = [0, 1, 2]
_PROTOCOLS = ("any", "tcp", "udp", "icmp", "icmpv6")


def _packets() -> list[Packet]:
    out = []
    for family, addresses in _ADDRESSES.items():
        for src, dst in itertools.product(addresses, repeat=2):

            def at(family: Family = family, src: int = src, dst: int = dst, **more: Any) -> Packet:
                return Packet("ip", family=family, src=src, dst=dst, **more)

            for protocol in (6, 17, 1, 58, 47):
                out.append(at(protocol=protocol, fragment="non-first"))
            for sport, dport in itertools.product(_PORTS, repeat=2):
                out += [at(protocol=6, sport=sport, dport=dport, tcp_flags=f) for f in _FLAGS]
                out.append(at(protocol=17, sport=sport, dport=dport))
            for icmp_type in _ICMP:
                out += [at(protocol=p, icmp_type=icmp_type) for p in (1, 58)]
            out.append(at(protocol=47, fragment="first"))
    return out


PACKETS = _packets()


@st.composite
def _rule(draw: st.DrawFn, i: int) -> dict[str, Any]:
    protocol = draw(st.sampled_from(_PROTOCOLS))
    rule: dict[str, Any] = {"name": f"r{i}", "protocol": protocol}
    action = draw(st.sampled_from(("allow", "deny", "deny", "allow", "rate_limit")))
    rule["action"] = action
    if action == "rate_limit":
        rule["rate_limit_pps"] = draw(st.sampled_from((10, 20)))
        rule["rate_limit_burst"] = 100
    if draw(st.integers(0, 5)) == 0:
        rule["log"] = True
    for key in ("source_cidrs", "destination_cidrs"):
        if draw(st.booleans()):
            rule[key] = draw(st.lists(st.sampled_from(_V4 + _V6), min_size=1, max_size=2))
    if protocol in ("tcp", "udp", "any"):
        for key in ("source_ports", "destination_ports"):
            if draw(st.integers(0, 2)) == 0:
                rule[key] = draw(st.lists(st.sampled_from([0, 1, "0-1"]), min_size=1, max_size=2))
    if protocol == "tcp" and draw(st.integers(0, 2)) == 0:
        rule["tcp_flags"] = draw(st.sampled_from(["SYN", "SYN,!ACK", "!ACK", "ACK,!FIN", "FIN"]))
    ported = "source_ports" in rule or "destination_ports" in rule
    if protocol in ("icmp", "icmpv6", "any") and not ported and draw(st.booleans()):
        rule["icmp_types"] = draw(st.lists(st.sampled_from([0, 1]), min_size=1, unique=True))
    return rule


@st.composite
def small_policies(draw: st.DrawFn, max_rules: int = 7) -> Policy:
    rules = [draw(_rule(i)) for i in range(draw(st.integers(1, max_rules)))]
    doc = {
        "version": 1,
        "name": "brute",
        "default_action": draw(st.sampled_from(("allow", "deny"))),
        "rules": rules,
    }
    return policy_from_document(doc)


def first_match(policy: Policy, packet: Packet) -> Rule | None:
    return next((r for r in policy.rules if not failed_fields(r, packet)), None)


def behaviour(policy: Policy, rule: Rule | None) -> tuple[object, ...]:
    if rule is None:
        return (policy.default_action, None, None, False)
    return (rule.action, rule.rate_limit_pps, rule.rate_limit_burst, rule.log)


def inside(region: Region, packet: Packet) -> bool:
    return region_overlaps(region, [packet_point(packet)])


_BRUTE = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@_BRUTE
@given(small_policies())
def test_decide_matches_the_evaluator_on_every_packet(policy: Policy) -> None:
    parts = decide(RuleIndex(policy), list(UNIVERSE))
    for packet in PACKETS:
        owners = [p.rule for p in parts if inside(p.region, packet)]
        assert owners == [first_match(policy, packet)], packet


@_BRUTE
@given(small_policies())
def test_shadowed_and_redundant_match_brute_force(policy: Policy) -> None:
    index = RuleIndex(policy)
    winners = {first_match(policy, p) for p in PACKETS}
    found = shadowed(index)
    assert {s.rule.id for s in found} == {r.id for r in policy.rules if r not in winners}
    for s in found:
        covered = [p for p in PACKETS if not failed_fields(s.rule, p)]
        assert all(any(not failed_fields(c, p) for c in s.cover) for p in covered)
        for dropped in s.cover:  # minimal: every cover rule is needed
            rest = [c for c in s.cover if c is not dropped]
            assert not all(any(not failed_fields(c, p) for c in rest) for p in covered)
    expected = set()
    for rule in policy.rules:
        if rule not in winners or rule.action is Action.RATE_LIMIT:
            continue
        without = Policy(
            **{**policy.__dict__, "rules": tuple(r for r in policy.rules if r != rule)}
        )
        if all(
            behaviour(policy, first_match(policy, p)) == behaviour(without, first_match(without, p))
            for p in PACKETS
        ):
            expected.add(rule.id)
    assert {r.rule.id for r in redundant(index)} == expected


@_BRUTE
@given(small_policies(), small_policies())
def test_diff_regions_are_exactly_the_changed_packets(old: Policy, new: Policy) -> None:
    changes = diff(RuleIndex(old), RuleIndex(new))
    for packet in PACKETS:
        was, now = first_match(old, packet), first_match(new, packet)
        changed = behaviour(old, was)[:3] != behaviour(new, now)[:3]
        unmatched = was is None and now is None
        hits = [c for c in changes if (unmatched if c.unmatched else inside([c.cube], packet))]
        assert len(hits) <= 1, "regions must be disjoint"
        assert bool([c for c in hits if c.kind == VERDICT]) == changed, packet
        for c in hits:
            assert (c.old.rule, c.new.rule) == (was, now)


@_BRUTE
@given(small_policies(), st.sampled_from([Action.ALLOW, Action.DENY]), st.data())
def test_prove_finds_exactly_the_counterexamples(
    policy: Policy, action: Action, data: st.DataObject
) -> None:
    rule = data.draw(st.sampled_from(policy.rules))
    selection = Selection(rule.protocol, rule.sources, rule.destinations, rule.source_ports)
    found = prove(RuleIndex(policy), selection, action)
    probe = replace(rule, destination_ports=(), tcp_flags_set=0, tcp_flags_clear=0, icmp_types=())
    for packet in PACKETS:
        if failed_fields(probe, packet):
            assert not any(inside([c.cube], packet) for c in found)
            continue
        decider = first_match(policy, packet)
        wrong = behaviour(policy, decider)[0] is not action
        hits = [c for c in found if inside([c.cube], packet)]
        assert bool(hits) == wrong, packet
        assert all(c.rule == decider for c in hits)
