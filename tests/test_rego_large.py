"""The Rego input of a policy with a blocklist: lists above LARGE_LIST are passed as their
widest CIDRs (and those near small sets), flagged, and the bundled invariants answer as
they would over the whole lists."""

from __future__ import annotations

import ipaddress
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fwc.compiler.gate import input as rego_input
from fwc.compiler.gate.input import blocks, policy_doc
from fwc.compiler.gate.rego import RegoOptions, gate
from fwc.compiler.policy.ir import Family
from tests.compile_helpers import policy_of


@st.composite
def spans(draw: st.DrawFn) -> tuple[tuple[int, int], ...]:
    points = sorted(draw(st.sets(st.integers(0, 2**16 - 1), min_size=2, max_size=80)))
    if len(points) % 2:
        points.pop()
    return tuple((points[i], points[i + 1]) for i in range(0, len(points), 2))


@settings(max_examples=200, deadline=None)
@given(spans(), st.lists(st.tuples(st.integers(0, 2**16 - 1), st.integers(0, 255)), max_size=3))
def test_widest_blocks_are_the_widest_and_those_near(
    spans: tuple[tuple[int, int], ...], near: list[tuple[int, int]]
) -> None:
    keep = 6
    everything = sorted(
        (b for lo, hi in spans for b in blocks(lo, hi, 32)), key=lambda b: (b[1], b[0])
    )
    around = [(first, first + size) for first, size in near]
    want = set(everything[:keep]) | {
        b for b in everything for lo, hi in around if b[0] <= hi and lo < b[0] + (1 << (32 - b[1]))
    }
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(rego_input, "LARGE_LIST", keep)
        got = rego_input._widest_blocks(spans, Family.IPV4, around)
    assert {(a.network, a.prefix_len) for a in got} == want


def test_blocks_are_the_fewest_cidrs() -> None:
    rng = random.Random(3)
    for _ in range(300):
        lo = rng.getrandbits(32)
        hi = min(2**32 - 1, lo + rng.getrandbits(rng.randint(0, 32)))
        want = ipaddress.summarize_address_range(
            ipaddress.IPv4Address(lo), ipaddress.IPv4Address(hi)
        )
        assert blocks(lo, hi, 32) == [(int(n.network_address), n.prefixlen) for n in want]


def _blocklist_policy(extra: str = "") -> str:
    rng = random.Random(15)
    entries = {f"100.{64 + rng.randrange(64)}.{rng.randrange(256)}.0/24" for _ in range(3000)}
    lines = "\n".join(f"    - {e}" for e in sorted(entries))
    return f"""version: 1
name: edge
default_action: deny
sets:
  mgmt_nets: ["10.20.0.0/16"]
  blocklist:
{lines}
{extra}rules:
  - name: deny_blocklist
    priority: 10
    source_cidrs: ["$blocklist"]
    description: reputation list
  - name: allow_ssh
    priority: 20
    action: allow
    protocol: tcp
    destination_ports: [22]
    description: ssh from anywhere not blocked
"""


def test_large_lists_are_flagged_and_sets_passed_by_size() -> None:
    doc = policy_doc(policy_of(_blocklist_policy()))
    assert "blocklist" not in doc["sets"] and "mgmt_nets" in doc["sets"]
    large = doc["large_sets"]["blocklist"]
    assert large["size"] == large["ipv4"] > 1024 and large["ipv6"] == 0
    rule = doc["rules"][0]
    assert len(rule["source_cidrs"]) == 1024 and rule["source_cidrs_complete"] is False
    assert doc["rules"][1]["source_cidrs_complete"] is True
    [v4] = [r for r in doc["analysis"]["allowed"] if r["family"] == "ipv4"]
    assert v4["source_cidrs_complete"] is False
    assert v4["source_cidrs"][0]["cidr"] == "128.0.0.0/1"  # the widest block left
    # a CIDR that holds the management network
    assert any(a["first"] <= "0a140000" and a["last"] >= "0a14ffff" for a in v4["source_cidrs"])


def test_invariants_answer_over_the_partial_lists() -> None:
    findings = gate(policy_of(_blocklist_policy()), RegoOptions())
    # ssh from the world minus a blocklist is still from the world; management reaches ssh
    assert [f for f in findings if "allows SSH" in f.message and "128.0.0.0/1" in f.message]
    assert not [f for f in findings if "management network" in f.message]
    # a blocklist entry inside the management network: the mgmt net no longer reaches ssh
    broken = _blocklist_policy().replace("  blocklist:\n", "  blocklist:\n    - 10.20.5.0/24\n")
    findings = gate(policy_of(broken), RegoOptions())
    assert [f for f in findings if "management network 10.20.0.0/16" in f.message]
