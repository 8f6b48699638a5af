"""The analysis with per-rule interfaces: its claims held to the reference evaluator on random
policies, frames and interface names, and the classes a policy attaches to."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fwc.compiler.analysis.decide import decide
from fwc.compiler.analysis.index import RuleIndex
from fwc.compiler.analysis.match import packet_point
from fwc.compiler.analysis.region import example, writable
from fwc.compiler.analysis.shadow import reaches, shadowed
from fwc.compiler.analysis.space import region_overlaps
from fwc.compiler.check import CheckOptions, check_file
from fwc.compiler.cli import main
from fwc.compiler.gate.input import policy_doc
from fwc.compiler.oracle.evaluate import evaluate
from fwc.compiler.oracle.frames import build_frame, fields_from_mapping
from fwc.compiler.policy.globs import Selection
from fwc.compiler.policy.ir import Policy
from tests.strategies import frames_for, policy_documents, policy_from_document

PATTERNS = ("eth0", "eth*", "wg*", "*0", "lan?", "lo")
NAMES = ("eth0", "eth1", "wg0", "wg9", "lan5", "lan10", "x0", "lo", "ab")
INCLUDES = ([], ["eth*", "wg*"], ["eth*", "lo"], ["*"])


@st.composite
def interface_policies(draw: st.DrawFn) -> Policy:
    doc: dict[str, Any] = draw(policy_documents(max_rules=8))
    for rule in doc["rules"]:
        if draw(st.integers(0, 2)):
            picked = draw(st.lists(st.sampled_from(PATTERNS), min_size=1, max_size=2, unique=True))
            rule["interfaces"] = [("!" if draw(st.booleans()) else "") + p for p in picked]
    include = draw(st.sampled_from(INCLUDES))
    if include:
        doc["interfaces"] = {"include": include}
    return policy_from_document(doc)


_PROPERTY = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _attached(policy: Policy) -> list[str]:
    selection = Selection(policy.interfaces.include, policy.interfaces.exclude)
    return [n for n in NAMES if selection.attaches(n)]


@_PROPERTY
@given(policy=interface_policies(), data=st.data())
def test_every_frame_on_an_attached_interface_lands_in_its_deciding_rules_part(
    policy: Policy, data: st.DataObject
) -> None:
    index = RuleIndex(policy)
    parts = decide(index, list(index.universe))
    frames = data.draw(st.lists(frames_for(policy), min_size=5, max_size=15))
    for frame in frames:
        for name in _attached(policy):
            verdict = evaluate(policy, frame, interface=name)
            if verdict.packet.klass != "ip":
                continue
            point = [packet_point(verdict.packet, index.interfaces)]
            owners = [p.rule for p in parts if region_overlaps(p.region, point)]
            assert owners == [verdict.rule], name


@_PROPERTY
@given(policy=interface_policies())
def test_reach_examples_and_shadow_examples_are_witnesses(policy: Policy) -> None:
    index = RuleIndex(policy)
    reached = reaches(index)
    dead = {s.rule.id for s in shadowed(index, reached)}
    for i, region in enumerate(reached):
        if not region:
            continue
        assert i not in dead
        packet = example(writable(region[0])[0], index.interfaces)
        name = packet.pop("interface", None)
        verdict = evaluate(policy, build_frame(fields_from_mapping(packet)), interface=name)
        assert verdict.rule == policy.rules[i]


@pytest.mark.parametrize(
    ("first", "second", "shadowed_name"),
    [
        (["eth*"], ["eth0"], "second"),
        (["eth0"], ["eth*"], None),
        (["!wg*"], ["eth1"], "second"),
        (["eth0", "eth1"], ["eth?"], "second"),  # the policy attaches to eth0 and eth1 only
    ],
)
def test_shadowing_by_interfaces(
    first: list[str], second: list[str], shadowed_name: str | None
) -> None:
    doc = {
        "name": "sh",
        "interfaces": {"include": ["eth0", "eth1", "wg*"]},
        "rules": [
            {"name": "first", "priority": 1, "action": "allow", "interfaces": first},
            {"name": "second", "priority": 2, "action": "allow", "interfaces": second},
        ],
    }
    index = RuleIndex(policy_from_document(doc))
    found = [s.rule.name for s in shadowed(index)]
    assert found == ([shadowed_name] if shadowed_name else [])


LOOPBACK = """
name: lo-open
default_action: deny
interfaces: {include: ["eth*", "lo"]}
sets: {mgmt_nets: ["10.20.0.0/16"]}
rules:
  - {name: accept_lo, priority: 1, action: allow, interfaces: ["lo"], description: the host}
  - {name: ssh, priority: 2, action: allow, protocol: tcp, destination_ports: [22],
     source_cidrs: ["$mgmt_nets"], description: operators}
  - {name: web_on_eth0, priority: 3, action: allow, protocol: tcp, destination_ports: [80],
     interfaces: ["eth0"], description: the web}
"""


def test_the_world_invariants_skip_loopback_regions(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Everything allowed on lo is the host talking to itself: no FWC040; the Rego input
    says which regions arrive on loopback only."""
    path = tmp_path / "lo-open.yaml"
    path.write_text(LOOPBACK)
    assert main(["check", str(path)]) == 0, capsys.readouterr().out
    result = check_file(path, CheckOptions())
    assert result.policy is not None
    doc = policy_doc(result.policy)
    regions = doc["analysis"]["allowed"]
    assert {r["loopback"] for r in regions if r["rules"] == ["accept_lo"]} == {True}
    web = [r for r in regions if r["rules"] == ["web_on_eth0"]]
    assert web and all(not r["loopback"] for r in web)
    assert web[0]["interfaces"] == ["matching eth0, not lo"]
    rules = {r["name"]: r for r in doc["rules"]}
    assert rules["accept_lo"]["interfaces"] == ["lo"]
    # the same rule on eth1 opens every port to the world
    path.write_text(LOOPBACK.replace('"lo"]}', '"lo0"]}').replace('["lo"]', '["eth1"]'))
    capsys.readouterr()
    assert main(["check", str(path)]) == 1
    assert "FWC040 rule `accept_lo` opens 65536 tcp/udp ports" in capsys.readouterr().out
