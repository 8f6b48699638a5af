"""Properties of a cases file: proven over whole regions, refuted with counterexamples that
the reference evaluator confirms, and judged by `fwc test` and `fwc check`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
import yaml
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from fwc.compiler.analysis import prove as prove_module
from fwc.compiler.analysis.decide import behaviour
from fwc.compiler.analysis.index import RuleIndex
from fwc.compiler.analysis.match import cubes
from fwc.compiler.analysis.prove import Counterexample, prove_property
from fwc.compiler.analysis.region import example
from fwc.compiler.analysis.space import Cube, Intervals, region_minus_all
from fwc.compiler.cli import main
from fwc.compiler.oracle.evaluate import Verdict, evaluate
from fwc.compiler.oracle.frames import build_frame, fields_from_mapping
from fwc.compiler.oracle.properties import MATCH_KEYS, properties_from_document
from fwc.compiler.oracle.suite import prove_all
from fwc.compiler.policy.ir import Action, Policy
from fwc.compiler.policy.source import load_bytes
from tests.strategies import (
    draw_cidr,
    draw_port_entry,
    draw_tcp_flags,
    policy_documents,
    policy_from_document,
)

ROOT = Path(__file__).resolve().parent.parent
EDGE = ROOT / "policies" / "edge-web.yaml"

FALSE = """\
properties:
  - name: https open to everyone
    match: {protocol: tcp, destination_ports: [443]}
    expect: allow
  - name: ssh from management
    match: {protocol: tcp, source_cidrs: ["$mgmt_nets"], destination_ports: [22]}
    expect: allow
"""


def fwc(capsys: pytest.CaptureFixture[str], *argv: str | Path) -> tuple[int, str]:
    code = main([str(a) for a in argv])
    return code, capsys.readouterr().out


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


# ---- fwc test -----------------------------------------------------------------------


def test_the_example_properties_are_proven(capsys: pytest.CaptureFixture[str]) -> None:
    code, out = fwc(
        capsys, "test", EDGE, ROOT / "policies" / "edge-web.cases.yaml", "--kernel", "never"
    )
    assert code == 0, out
    assert "3 properties: 3 proven, 0 false" in out


def test_a_false_property_names_region_packet_and_rule(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    cases = write(tmp_path / "p.cases.yaml", FALSE)
    code, out = fwc(capsys, "test", EDGE, cases, "--kernel", "never")
    assert code == 1
    first = out.splitlines()[0]
    assert first.startswith(f"{cases}:2:5: error FWC062 property `https open to everyone`")
    assert "tcp 198.51.100.0/24 -> any dport 443 gets deny by rule `drop_blocklist`" in first
    assert "edge-web.yaml:13:5" in first
    assert "2001:db8:bad::/48" in out  # the second region, listed under the finding
    assert "2 properties: 1 proven, 1 false" in out


def test_json_lists_properties_and_counterexamples(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    cases = write(tmp_path / "p.cases.yaml", FALSE)
    code, out = fwc(capsys, "test", EDGE, cases, "--kernel", "never", "--format", "json")
    doc = json.loads(out)
    assert code == 1
    https, ssh = doc["properties"]
    assert (https["holds"], ssh["holds"]) == (False, True)
    assert https["line"] == 2 and https["expect"] == "allow"
    assert https["counterexamples_total"] == 2
    counter = https["counterexamples"][0]
    assert counter["match"]["source_cidrs"] == ["198.51.100.0/24"]
    assert counter["match"]["destination_ports"] == [443]
    assert (counter["verdict"], counter["rule"]) == ("deny", "drop_blocklist")
    assert counter["example"]["src"] == "198.51.100.1"
    assert doc["summary"]["properties"] == 2 and doc["summary"]["false"] == 1
    assert [f["id"] for f in doc["findings"]] == ["FWC062"]


def test_junit_has_a_test_case_per_property(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    cases = write(tmp_path / "p.cases.yaml", FALSE)
    _, out = fwc(capsys, "test", EDGE, cases, "--kernel", "never", "--format", "junit")
    assert 'tests="2" failures="1"' in out
    assert 'classname="fwc.property" name="ssh from management"' in out


def test_expect_not(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    cases = write(
        tmp_path / "p.cases.yaml",
        "properties:\n"
        "  - name: no udp gets in\n"
        "    match: {protocol: udp}\n"
        "    expect_not: allow\n"
        "  - name: the blocklist is never allowed\n"
        "    match: {source_cidrs: [$blocklist]}\n"
        "    expect_not: allow\n",
    )
    code, out = fwc(capsys, "test", EDGE, cases, "--kernel", "never")
    assert code == 1
    assert "property `no udp gets in` (expect_not: allow) is false: udp" in out
    assert "sport 53 gets allow by rule `allow_dns_replies`" in out
    assert "the blocklist" not in out


@pytest.mark.parametrize(
    ("body", "line", "message"),
    [
        ("  - name: x\n    match: {}\n", 2, "give exactly one of `expect`"),
        ("  - name: x\n    match: {}\n    expect: allow\n    expect_not: deny\n", 2, "exactly one"),
        ("  - name: x\n    match: {sport: 3}\n    expect: allow\n", 3, "unknown key `sport`"),
        ("  - name: x\n    match: {}\n    expect: pass\n", 4, "must be one of allow, deny"),
        ("  - match: {}\n    expect: allow\n", 2, "'name' is a required property"),
        ("  - 5\n", 2, "property #1: it must be a mapping, not an integer"),
        ("  - name: x\n    match: 3\n    expect: deny\n", 3, "`match` must be a mapping"),
        ("  - name: x\n    match: {source_cidrs: [10.0.0.300]}\n    expect: allow\n", 3, "not an"),
        ("  - name: x\n    match: {source_cidrs: [$nope]}\n    expect: allow\n", 3, "`$nope`"),
        ("  - name: x\n    match: {source_ports: [$mgmt_nets]}\n    expect: deny\n", 3, "ports"),
        (
            "  - name: x\n    match: {protocol: icmp, destination_ports: [1]}\n    expect: deny\n",
            3,
            "selects no packet",
        ),
        (
            "  - name: x\n    match: {protocol: tcp, tcp_flags: 'SYN,!SYN'}\n    expect: deny\n",
            3,
            "SYN",
        ),
    ],
)
def test_invalid_properties_are_fwc061_at_their_line(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, body: str, line: int, message: str
) -> None:
    cases = write(tmp_path / "p.cases.yaml", "properties:\n" + body)
    code, out = fwc(capsys, "test", EDGE, cases, "--kernel", "never")
    assert code == 1
    assert out.startswith(f"{cases}:{line}:"), out
    assert "FWC061" in out and message in out, out


# ---- fwc check ----------------------------------------------------------------------


def test_check_judges_the_cases_file_beside_the_policy(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    policy = write(tmp_path / "edge.yaml", EDGE.read_text(encoding="utf-8"))
    cases = write(
        tmp_path / "edge.cases.yaml",
        FALSE
        + "cases:\n  - name: telnet\n    packet: {proto: tcp, dport: 23}\n    expect: allow\n",
    )
    code, out = fwc(capsys, "check", "--no-rego", tmp_path)
    assert code == 1
    assert f"{cases}:2:5: error FWC062" in out
    assert f"{cases}:9:5: error FWC060 case `telnet`: expected allow" in out
    code, out = fwc(capsys, "check", "--no-rego", "--format", "sarif", policy)
    results = json.loads(out)["runs"][0]["results"]
    assert {
        (r["ruleId"], r["locations"][0]["physicalLocation"]["region"]["startLine"]) for r in results
    } == {
        ("FWC062", 2),
        ("FWC060", 9),
    }
    code, out = fwc(capsys, "check", "--no-rego", "--format", "github", policy)
    assert f"::error file={cases},line=2,col=5,title=FWC062" in out


def test_check_reports_a_broken_cases_file(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    write(tmp_path / "edge.yaml", EDGE.read_text(encoding="utf-8"))
    cases = write(tmp_path / "edge.cases.yml", "cases: [1]\n")
    code, out = fwc(capsys, "check", "--no-rego", tmp_path)
    assert code == 1
    assert f"{cases}:1:9: error FWC061 case #1 must be a mapping" in out


def test_check_of_the_examples_runs_their_cases(capsys: pytest.CaptureFixture[str]) -> None:
    code, out = fwc(capsys, "check", "--no-rego", ROOT / "policies")
    assert code == 0, out


# ---- held to the reference evaluator ------------------------------------------------


def _verdict(policy: Policy, packet: dict[str, Any]) -> Verdict:
    verdict = evaluate(policy, build_frame(fields_from_mapping(packet)))
    assert verdict.packet.klass == "ip", packet
    return verdict


def _draw_point(draw: st.DrawFn, cube: Cube) -> Cube:
    """A random packet of `cube`, as a cube of single values."""

    def value(spans: Intervals) -> Intervals:
        lo, hi = draw(st.sampled_from(spans))
        v = draw(st.integers(lo, hi))
        return ((v, v),)

    def bit(mask: int) -> int:
        return 1 << draw(st.sampled_from([b for b in range(mask.bit_length()) if mask >> b & 1]))

    return Cube(
        bit(cube.family),
        value(cube.src),
        value(cube.dst),
        bit(cube.fragment),
        bit(cube.protocol),
        value(cube.sport),
        value(cube.dport),
        bit(cube.tcp_flags),
        bit(cube.icmp_type),
    )


@st.composite
def _property_match(draw: st.DrawFn, doc: dict[str, Any]) -> dict[str, Any]:
    """Often a rule's own match, narrowed or widened; sometimes fresh fields."""
    rule = draw(st.sampled_from(doc["rules"]))
    match = {k: v for k, v in rule.items() if k in MATCH_KEYS and draw(st.booleans())}
    if draw(st.booleans()):
        match["source_cidrs"] = [draw_cidr(draw) for _ in range(draw(st.integers(1, 2)))]
    if draw(st.integers(0, 3)) == 0:
        match["protocol"] = draw(st.sampled_from(["tcp", "udp", "icmp", "any"]))
    if match.get("protocol") in ("tcp", "udp") and draw(st.booleans()):
        match["destination_ports"] = [draw_port_entry(draw)]
    if match.get("protocol") == "tcp" and draw(st.integers(0, 3)) == 0:
        match["tcp_flags"] = draw_tcp_flags(draw)
    return match


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_proofs_and_counterexamples_hold_on_the_reference_evaluator(data: st.DataObject) -> None:
    doc = data.draw(policy_documents(1, 10, rate_limit=True))
    policy = policy_from_document(doc)
    entry: dict[str, Any] = {"name": "p", "match": data.draw(_property_match(doc))}
    action = data.draw(st.sampled_from(["allow", "deny", "rate_limit"]))
    entry["expect_not" if data.draw(st.booleans()) else "expect"] = action
    text = yaml.safe_dump({"properties": [entry]}, sort_keys=False)
    loaded, _ = load_bytes(text.encode(), "p.cases.yaml")
    assert loaded is not None
    props, findings = properties_from_document(loaded, policy)
    assume(not findings)
    [result] = prove_all(policy, props)
    prop = result.prop

    def gets(verdict: Verdict) -> bool:
        return behaviour(policy, verdict.rule).action is Action(action)

    if result.holds:
        region = cubes(prop.selection)
        for _ in range(10):
            cube = data.draw(st.sampled_from(region))
            packet = example(_draw_point(data.draw, cube))
            assert gets(_verdict(policy, packet)) != prop.negated, (text, packet)
        return
    for counter in result.counterexamples[:8]:
        for packet in (counter.example, example(_draw_point(data.draw, counter.cube))):
            verdict = _verdict(policy, packet)
            assert verdict.rule == counter.rule, (text, packet)
            assert gets(verdict) == prop.negated, (text, packet)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_halving_a_selection_finds_the_same_counterexamples(data: st.DataObject) -> None:
    """The pieces a wide selection is cut into before first match (prove.SPLIT_OVER) change
    how counterexamples are written, never which packets they hold or who decides them."""
    doc = data.draw(policy_documents(1, 10))
    policy = policy_from_document(doc)
    match = data.draw(_property_match(doc))
    text = yaml.safe_dump({"properties": [{"name": "p", "match": match, "expect": "allow"}]})
    loaded, _ = load_bytes(text.encode(), "p.cases.yaml")
    assert loaded is not None
    props, findings = properties_from_document(loaded, policy)
    assume(not findings)
    index = RuleIndex(policy)
    whole = prove_property(index, props[0])
    with mock.patch.object(prove_module, "SPLIT_OVER", 0):
        halved = prove_property(index, props[0])

    def by_rule(found: list[Counterexample]) -> dict[str | None, list[Cube]]:
        out: dict[str | None, list[Cube]] = {}
        for c in found:
            out.setdefault(c.rule.name if c.rule else None, []).append(c.cube)
        return out

    a, b = by_rule(whole), by_rule(halved)
    assert a.keys() == b.keys()
    for rule, cubes_a in a.items():
        assert region_minus_all(cubes_a, b[rule]) == []
        assert region_minus_all(b[rule], cubes_a) == []
