"""JUnit XML from `fwc check`: one case per finding with file and line, counts that agree
with the exit code under --fail-on-warn, and well-formed XML whatever the names and messages."""

from __future__ import annotations

import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from fwc.compiler.check import CheckResult, FileResult
from fwc.compiler.policy.findings import Finding, Location, Severity, error, warning
from fwc.compiler.reports import junit

FWC = str(Path(sys.executable).parent / "fwc")

EQUAL_PRIORITY = """\
name: eq
default_action: deny
rules:
  - {name: a, priority: 10, action: allow, protocol: tcp, destination_ports: [22]}
  - {name: b, priority: 10, action: allow, protocol: tcp, destination_ports: [23]}
"""


def cases(xml: str) -> list[ET.Element]:
    suite = ET.fromstring(xml).find("testsuite")
    assert suite is not None
    return suite.findall("testcase")


def test_warnings_fail_only_under_fail_on_warn(tmp_path: Path) -> None:
    policy = tmp_path / "eq.yaml"
    policy.write_text(EQUAL_PRIORITY)
    for flags, code, failures in (((), 0, "0"), (("--fail-on-warn",), 1, "1")):
        proc = subprocess.run(
            [FWC, "check", "--no-rego", "--format", "junit", *flags, str(policy)],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert proc.returncode == code, proc.stderr
        root = ET.fromstring(proc.stdout)
        suite = root.find("testsuite")
        assert suite is not None
        assert (root.get("failures"), suite.get("failures")) == (failures, failures)
        assert float(suite.get("time") or "-1") > 0
        (case,) = suite.findall("testcase")
        assert (case.get("file"), case.get("line")) == (str(policy), "5")
        assert (case.find("failure") is not None) == bool(flags)


def test_several_findings_of_one_file_are_several_cases() -> None:
    findings = (
        error("FWC020", "rule name `a` is already used", Location("p.yaml", 9, 1), "a"),
        error("FWC020", "rule name `b` is already used", Location("p.yaml", 12, 1), "b"),
        Finding("FWC030", Severity.INFO, "note", Location("p.yaml", 2, 1)),
    )
    xml = junit.render(CheckResult((FileResult("p.yaml", findings),)))
    got = [(c.get("line"), c.find("failure") is not None) for c in cases(xml)]
    assert got == [("2", False), ("9", True), ("12", True)]
    assert all(c.get("time") == "0" for c in cases(xml))


HOSTILE = st.text(
    st.characters(codec="utf-8", exclude_categories=())
    | st.sampled_from("\x00\x1b\x0c\ufffe<&\"'"),
    max_size=40,
)


@settings(max_examples=200, deadline=None)
@given(file=HOSTILE, message=HOSTILE, rule=HOSTILE)
def test_well_formed_whatever_the_input(file: str, message: str, rule: str) -> None:
    findings = (
        error("FWC020", message, Location(file, 3, 1), rule or None),
        warning("FWC028", message, Location(file, 5, 2), rule or None),
    )
    xml = junit.render(CheckResult((FileResult(file, findings),)), fail_on_warn=True)
    xml.encode("utf-8")
    got = cases(xml)
    assert len(got) == 2
    failure = got[0].find("failure")
    assert failure is not None
    assert failure.get("message") == junit.xml_text(message)
    assert got[0].get("file") == junit.xml_text(file)


def test_forbidden_characters_are_escaped_visibly() -> None:
    assert junit.xml_text("a\x00b\x1bc\ud800\tok\n") == "a\\x00b\\x1bc\\xd800\tok\n"
