"""The analysis with connection state: its claims held to the reference evaluator on random
policies with `state` rules, random packets (tracked and untracked) and every state input."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fwc.compiler.analysis.decide import decide
from fwc.compiler.analysis.index import RuleIndex
from fwc.compiler.analysis.match import Selection, packet_point
from fwc.compiler.analysis.prove import Property, prove_property, selects_nothing
from fwc.compiler.analysis.region import example, example_state, writable
from fwc.compiler.analysis.shadow import reaches, shadowed
from fwc.compiler.analysis.space import region_overlaps
from fwc.compiler.cli import main
from fwc.compiler.gate.input import policy_doc
from fwc.compiler.oracle.evaluate import evaluate
from fwc.compiler.oracle.frames import build_frame, fields_from_mapping
from fwc.compiler.policy.findings import Location
from fwc.compiler.policy.ir import CT_STATES, Action, Policy, Protocol
from tests.strategies import policy_documents, policy_from_document

STATES = list(CT_STATES)


@st.composite
def state_policies(draw: st.DrawFn) -> Policy:
    doc: dict[str, Any] = draw(policy_documents(max_rules=8))
    for rule in doc["rules"]:
        if draw(st.integers(0, 2)):
            rule["state"] = draw(st.lists(st.sampled_from(STATES), min_size=1, unique=True))
    return policy_from_document(doc)


@st.composite
def packets(draw: st.DrawFn) -> dict[str, Any]:
    v6 = draw(st.booleans())
    src, dst = ("2001:db8::1", "2001:db8::2") if v6 else ("10.0.0.1", "192.168.1.1")
    kind = draw(st.sampled_from(["tcp", "udp", "icmp", "other"]))
    packet: dict[str, Any] = {"src": src, "dst": dst}
    if kind in ("tcp", "udp"):
        packet |= {"proto": kind, "sport": draw(st.sampled_from([22, 80, 12345]))}
        packet["dport"] = draw(st.sampled_from([22, 53, 80, 443]))
    elif kind == "icmp":
        packet["proto"] = "icmpv6" if v6 else "icmp"
        errors = [1, 2, 3, 4] if v6 else [3, 4, 5, 11, 12]
        packet["icmp_type"] = draw(st.sampled_from([*errors, 128 if v6 else 8, 0]))
        if draw(st.booleans()):
            packet["inner"] = {"proto": draw(st.sampled_from(["tcp", "udp"]))}
    else:
        packet["proto"] = draw(st.sampled_from([47, 50, 132]))
    return packet


_PROPERTY = settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@_PROPERTY
@given(policy=state_policies(), data=st.data())
def test_every_packet_in_every_state_lands_in_its_deciding_rules_part(
    policy: Policy, data: st.DataObject
) -> None:
    index = RuleIndex(policy)
    parts = decide(index, list(index.universe))
    for packet in data.draw(st.lists(packets(), min_size=5, max_size=12)):
        frame = build_frame(fields_from_mapping(packet))
        for state in STATES:
            verdict = evaluate(policy, frame, ct_state=state)
            point = [packet_point(verdict.packet, index.interfaces)]
            owners = [p.rule for p in parts if region_overlaps(p.region, point)]
            assert owners == [verdict.rule], (packet, state)


@_PROPERTY
@given(policy=state_policies())
def test_reach_examples_are_witnesses_in_their_state(policy: Policy) -> None:
    index = RuleIndex(policy)
    reached = reaches(index)
    dead = {s.rule.id for s in shadowed(index, reached)}
    for i, region in enumerate(reached):
        if not region:
            continue
        assert i not in dead
        cube = writable(region[0])[0]
        packet = example(cube, index.interfaces)
        packet.pop("interface", None)
        assert packet.pop("state", example_state(cube)) == example_state(cube)
        frame = build_frame(fields_from_mapping(packet))
        verdict = evaluate(policy, frame, ct_state=example_state(cube))
        assert verdict.rule == policy.rules[i], (packet, example_state(cube))


def _policy(rules: list[dict[str, Any]]) -> Policy:
    doc = {"name": "p", "default_action": "deny", "rules": rules}
    return policy_from_document(doc)


def test_a_state_rule_behind_a_rule_without_state_is_shadowed() -> None:
    policy = _policy(
        [
            {"name": "web", "action": "allow", "protocol": "tcp", "destination_ports": [80]},
            {"name": "est", "action": "allow", "protocol": "tcp", "state": ["established"]},
        ]
    )
    index = RuleIndex(policy)
    assert [s.rule.name for s in shadowed(index, reaches(index))] == []
    policy = _policy(
        [
            {"name": "all", "action": "allow", "protocol": "tcp"},
            {"name": "est", "action": "deny", "protocol": "tcp", "state": ["established"]},
        ]
    )
    index = RuleIndex(policy)
    assert [s.rule.name for s in shadowed(index, reaches(index))] == ["est"]


def test_every_tracked_state_shadows_a_later_tcp_rule_but_icmp_echo_is_untracked() -> None:
    all_states = ["new", "established", "related", "invalid"]
    tcp = _policy(
        [
            {"name": "ct", "action": "allow", "protocol": "tcp", "state": all_states},
            {"name": "tcp", "action": "deny", "protocol": "tcp"},
            {"name": "web", "action": "deny", "protocol": "tcp", "destination_ports": [80]},
        ]
    )
    # Non-first fragments are untracked: only the rule that needs ports is shadowed.
    index = RuleIndex(tcp)
    assert [s.rule.name for s in shadowed(index, reaches(index))] == ["web"]
    icmp = _policy(
        [
            {"name": "ct", "action": "allow", "state": all_states},
            {"name": "ping", "action": "deny", "protocol": "icmp", "icmp_types": [8]},
        ]
    )
    index = RuleIndex(icmp)
    assert [s.rule.name for s in shadowed(index, reaches(index))] == []


def test_the_rego_input_carries_rule_states_and_region_states() -> None:
    policy = _policy(
        [
            {"name": "est", "action": "allow", "state": ["established", "related"]},
            {"name": "web", "action": "allow", "protocol": "tcp", "destination_ports": [80]},
        ]
    )
    doc = policy_doc(policy)
    assert [r["state"] for r in doc["rules"]] == [["established", "related"], []]
    allowed = doc["analysis"]["allowed"]
    est = [r for r in allowed if r["rules"] == ["est"]]
    assert est
    assert all(r["states"] == ["established", "related"] for r in est)
    assert any(r["rules"] == ["web"] and r["states"] == ["invalid", "new"] for r in allowed)


def _property(selection: Selection, action: Action) -> Property:
    return Property("p", selection, action, False, Location("cases.yaml", 1, 1))


def test_properties_with_state() -> None:
    policy = _policy(
        [
            {"name": "est", "action": "allow", "state": ["established", "related"]},
            {"name": "web", "action": "allow", "protocol": "tcp", "destination_ports": [80]},
        ]
    )
    index = RuleIndex(policy)
    replies = Selection(protocol=Protocol.TCP, states=CT_STATES["established"])
    assert prove_property(index, _property(replies, Action.ALLOW)) == []
    new = Selection(protocol=Protocol.TCP, states=CT_STATES["new"])
    found = prove_property(index, _property(new, Action.ALLOW))
    assert found
    for counter in found:
        packet = dict(counter.example)
        assert packet.pop("state") == "new"
        frame = build_frame(fields_from_mapping(packet))
        assert evaluate(policy, frame, ct_state="new").rule is None
    # ICMP echo is never established: the selection holds no packet.
    echo = Selection(protocol=Protocol.ICMP, icmp_types=(8,), states=CT_STATES["established"])
    assert selects_nothing(echo)
    # A policy without state rules: a state property still splits the space by state.
    plain = RuleIndex(_policy([{"name": "web", "action": "allow", "protocol": "tcp"}]))
    assert prove_property(plain, _property(replies, Action.ALLOW)) == []


def test_fwc_diff_names_the_state_of_a_changed_region(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    base = {"name": "p", "default_action": "deny"}
    old = base | {
        "rules": [
            {
                "name": "web",
                "priority": 1,
                "action": "allow",
                "protocol": "tcp",
                "destination_ports": [80],
            }
        ]
    }
    new = base | {
        "rules": [
            {
                "name": "web",
                "priority": 1,
                "action": "allow",
                "protocol": "tcp",
                "destination_ports": [80],
                "state": ["established"],
            }
        ]
    }
    (tmp_path / "old.yaml").write_text(yaml.safe_dump(old))
    (tmp_path / "new.yaml").write_text(yaml.safe_dump(new))
    main(["diff", str(tmp_path / "old.yaml"), str(tmp_path / "new.yaml")])
    out = capsys.readouterr().out
    assert "dport 80 state invalid,related,new" in out, out
    assert 'state: "new"' in out


def test_a_rule_that_never_matches_gets_one_finding() -> None:
    """FWC036 names a rule whose state its packets never have; the analysis would add that
    the same rule matches nothing (FWC030) or changes nothing (FWC035): only FWC036 stays."""
    from fwc.compiler.check import check_file

    broken = Path(__file__).resolve().parent / "broken" / "fwc036_state_never_matches.yaml"
    findings = check_file(broken).findings
    never = {f.rule for f in findings if f.id == "FWC036"}
    assert never == {"ping_replies", "new_unreachables", "invalid_tcp"}
    assert not [f for f in findings if f.rule in never and f.id != "FWC036"]
