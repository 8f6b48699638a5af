"""`fwc test`: reference-only runs, every report format, bad input, and the kernel run."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
import yaml

from fwc.compiler.cli import main
from fwc.compiler.commands import test as cmd_test
from fwc.compiler.oracle.evaluate import evaluate
from fwc.compiler.oracle.frames import build_frame, fields_from_mapping
from fwc.compiler.policy.normalize import normalize
from fwc.compiler.policy.source import load_bytes

ROOT = Path(__file__).resolve().parent.parent
EDGE = ROOT / "policies" / "edge-web.yaml"
EDGE_CASES = ROOT / "policies" / "edge-web.cases.yaml"
TABLES = sorted((ROOT / "tests" / "cases").glob("*.yaml"))

FAILING = """\
cases:
  - name: telnet is allowed
    packet: {proto: tcp, src: 203.0.113.9, dport: 23}
    expect: allow
  - name: https by the ssh rule
    packet: {proto: tcp, src: 203.0.113.9, dport: 443}
    expect: allow
    rule: allow_ssh_from_mgmt
  - name: https
    packet: {proto: tcp, src: 203.0.113.9, dport: 443}
    expect: pass
"""


def fwc(capsys: pytest.CaptureFixture[str], *argv: str | Path) -> tuple[int, str, str]:
    code = main(["test", *map(str, argv)])
    out, err = capsys.readouterr()
    return code, out, err


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_example_cases_pass_on_the_reference(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = fwc(capsys, EDGE, EDGE_CASES, "--kernel", "never")
    assert code == 0
    assert "0 failed; 3 properties: 3 proven, 0 false; kernel: not checked (--kernel never)" in out


def test_tutorial_cases_pass_on_the_reference(capsys: pytest.CaptureFixture[str]) -> None:
    policy = ROOT / "policies" / "tutorial-host.yaml"
    cases = ROOT / "policies" / "tutorial-host.cases.yaml"
    assert fwc(capsys, policy, cases, "--kernel", "never")[0] == 0


def test_failures_name_the_case_and_its_line(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    cases = write(tmp_path, "c.yaml", FAILING)
    code, out, _ = fwc(capsys, EDGE, cases, "--kernel", "never")
    assert code == 1
    lines = out.splitlines()
    assert lines[0] == (
        f"{cases}:2:5: error FWC060 case `telnet is allowed`: expected allow, "
        "the policy gives drop by default"
    )
    assert lines[1].startswith(
        f"{cases}:5:5: error FWC060 case `https by the ssh rule`: expected allow by rule "
        "`allow_ssh_from_mgmt`, the policy gives pass by rule `allow_web` ("
    )
    assert lines[2].startswith("3 cases: 1 passed, 2 failed")


def test_json_report(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    cases = write(tmp_path, "c.yaml", FAILING)
    code, out, _ = fwc(capsys, EDGE, cases, "--kernel", "never", "--format", "json")
    doc = json.loads(out)
    assert code == 1
    assert doc["summary"] == {
        "cases": 3,
        "passed": 1,
        "failed": 2,
        "properties": 0,
        "proven": 0,
        "false": 0,
    }
    assert [c["passed"] for c in doc["cases"]] == [False, False, True]
    assert doc["cases"][1]["reference"] == {
        "verdict": "pass",
        "xdp_action": 2,
        "decided_by": "allow_web",
    }
    assert {f["id"] for f in doc["findings"]} == {"FWC060"}


def test_junit_has_one_test_case_per_packet_case(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    cases = write(tmp_path, "c.yaml", FAILING)
    _, out, _ = fwc(capsys, EDGE, cases, "--kernel", "never", "--format", "junit")
    suite = ET.fromstring(out).find("testsuite")
    assert suite is not None
    assert [c.get("name") for c in suite.iter("testcase")] == [
        "telnet is allowed",
        "https by the ssh rule",
        "https",
    ]
    assert suite.get("failures") == "2"


def test_github_annotations(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    cases = write(tmp_path, "c.yaml", FAILING)
    _, out, _ = fwc(capsys, EDGE, cases, "--kernel", "never", "--format", "github")
    assert out.startswith(f"::error file={cases},line=2,col=5,title=FWC060 packet case failed::")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("cases: {}", "a cases file is a mapping with a `cases:` list"),
        ("cases: []\nextra: 1", "unknown top-level key `extra`"),
        ("cases:\n  - {packet: {dport: 1}}", "`expect` must be allow, deny, pass or drop"),
        ("cases:\n  - {expect: deny}", "give exactly one of `packet`"),
        ("cases:\n  - {packet: {}, frame: '00', expect: deny}", "give exactly one of `packet`"),
        ("cases:\n  - {packet: {dport: -1}, expect: deny}", "`dport` must be an integer"),
        ("cases:\n  - {frame: 'zz', expect: deny}", "`frame` must be a string of hex bytes"),
        ("cases:\n  - {packet: {}, expect: deny, colour: 1}", "unknown key `colour`"),
        ("cases:\n  - {packet: {}, expect: deny, truncate: -1}", "`truncate` must be"),
        ("cases:\n  - {packet: {}, expect: deny, patch: {x: '00'}}", "`patch` entry x"),
        ("cases:\n  - {packet: {}, expect: deny, rule: nope}", "expects rule `nope`"),
        ("cases:\n  - {packet: {}, expect: deny, state: open}", "`state` must be one of"),
        ("cases:\n  - {packet: {}, expect: deny, state: [new]}", "`state` must be one of"),
        ("cases:\n  - {packet: {inner: {}}, expect: deny}", "`inner` (the packet an ICMP"),
        (
            "cases:\n  - {packet: {proto: icmp, inner: {proto: icmp}}, expect: deny}",
            "`inner.proto` must be tcp or udp",
        ),
        (
            "cases:\n  - {packet: {proto: icmp, inner: {dst: '::1'}}, expect: deny}",
            "`inner` addresses must be of the same family",
        ),
        ("cases: [", "YAML syntax error"),
    ],
)
def test_invalid_cases_are_findings(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, text: str, message: str
) -> None:
    cases = write(tmp_path, "c.yaml", text)
    code, out, _ = fwc(capsys, EDGE, cases, "--kernel", "never")
    assert code == 1
    assert message in out
    assert "Traceback" not in out


def test_a_broken_policy_reports_its_findings(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    policy = write(tmp_path, "p.yaml", "rules:\n  - {name: a, priority: 1, protocl: tcp}\n")
    code, out, _ = fwc(capsys, policy, EDGE_CASES, "--kernel", "never")
    assert code == 1
    assert "FWC010" in out


def test_missing_files_are_usage_errors(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, _, err = fwc(capsys, tmp_path / "none.yaml", EDGE_CASES)
    assert code == 2
    assert "none.yaml: no such file" in err


def test_auto_without_root_checks_the_reference_only(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("os.geteuid", lambda: 1000)
    code, out, _ = fwc(capsys, EDGE, EDGE_CASES)
    assert code == 0
    assert "kernel: not checked (not root)" in out
    assert fwc(capsys, EDGE, EDGE_CASES, "--kernel", "always")[0] == 2


def test_always_fails_when_the_kernel_layer_is_missing(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("os.geteuid", lambda: 0)
    monkeypatch.setattr(cmd_test, "_modules", lambda: "the kernel layer is not available")
    code, _, err = fwc(capsys, EDGE, EDGE_CASES, "--kernel", "always")
    assert code == 2
    assert "the kernel layer is not available" in err
    code, out, _ = fwc(capsys, EDGE, EDGE_CASES, "--kernel", "auto")
    assert code == 0
    assert "kernel: not checked (the kernel layer is not available)" in out


@pytest.mark.kernel
def test_example_cases_pass_in_the_kernel(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = fwc(capsys, EDGE, EDGE_CASES, "--kernel", "always")
    assert (code, out.splitlines()[-1]) == (
        0,
        "17 cases: 17 passed, 0 failed; 3 properties: 3 proven, 0 false; kernel: checked",
    )


@pytest.mark.kernel
@pytest.mark.parametrize("strategy", ["constants", "tables"])
@pytest.mark.parametrize("table", TABLES, ids=[t.stem for t in TABLES])
def test_table_cases_pass_in_the_kernel(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, table: Path, strategy: str
) -> None:
    """Both strategies give every table case the verdict and the rule the oracle gives."""
    doc = yaml.safe_load(table.read_text(encoding="utf-8"))
    policy = write(tmp_path, f"{table.stem}.yaml", yaml.safe_dump(doc["policy"]))
    cases = write(tmp_path, "cases.yaml", yaml.safe_dump({"cases": doc["cases"]}))
    code, out, _ = fwc(
        capsys, policy, cases, "--kernel", "always", "--strategy", strategy, "--format", "json"
    )
    report = json.loads(out)
    assert report["kernel"] == "checked"
    assert [f["message"] for f in report["findings"]] == []
    assert code == 0


STATE_TABLE = ROOT / "tests" / "cases" / "state.yaml"


def test_a_case_state_reaches_the_reference(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    doc = yaml.safe_load(STATE_TABLE.read_text(encoding="utf-8"))
    policy = write(tmp_path, "state.yaml", yaml.safe_dump({"name": "state", **doc["policy"]}))
    text = """\
cases:
  - {name: new, packet: {dport: 80}, expect: deny, rule: default}
  - {name: established, state: established, packet: {dport: 80}, expect: allow, rule: replies}
  - {name: wrong, state: related, packet: {dport: 80}, expect: deny}
"""
    code, out, _ = fwc(capsys, policy, write(tmp_path, "c.yaml", text), "--kernel", "never")
    assert code == 1
    assert "3 cases: 2 passed, 1 failed" in out
    assert "case `wrong`" in out


def test_the_kernel_runs_only_the_states_an_empty_table_gives() -> None:
    doc = yaml.safe_load(STATE_TABLE.read_text(encoding="utf-8"))
    text = yaml.safe_dump({"name": "state", **doc["policy"]})
    loaded, _ = load_bytes(text.encode(), "state.yaml")
    assert loaded is not None
    policy, _ = normalize(loaded)
    assert policy is not None
    rows = [
        ({"dport": 80}, "new", True),
        ({"dport": 80}, "established", False),
        ({"proto": "icmp", "icmp_type": 3, "inner": {"proto": "udp"}}, "invalid", True),
        ({"proto": "icmp", "icmp_type": 3, "inner": {"proto": "udp"}}, "related", False),
        ({"proto": "icmp", "icmp_type": 8}, "established", True),
    ]
    for fields, state, runs in rows:
        frame = build_frame(fields_from_mapping(fields))
        packet = evaluate(policy, frame, ct_state=state).packet
        assert cmd_test._kernel_state_agrees(policy, packet) is runs, (fields, state)
