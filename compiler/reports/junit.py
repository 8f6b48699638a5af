"""JUnit XML: one test case per policy file, one failure per error, warnings as output."""

from __future__ import annotations

import xml.etree.ElementTree as ET

from fwc.compiler.check import CheckResult
from fwc.compiler.policy.findings import Severity
from fwc.compiler.reports.text import line


def render(result: CheckResult, color: bool = False) -> str:
    failures = sum(1 for r in result.files if r.errors)
    suites = ET.Element(
        "testsuites", name="fwc check", tests=str(len(result.files)), failures=str(failures)
    )
    suite = ET.SubElement(
        suites,
        "testsuite",
        name="fwc check",
        tests=str(len(result.files)),
        failures=str(failures),
        errors="0",
        skipped="0",
    )
    for file_result in result.files:
        case = ET.SubElement(suite, "testcase", classname="fwc.check", name=file_result.file)
        for finding in file_result.findings:
            if finding.severity is Severity.ERROR:
                failure = ET.SubElement(case, "failure", message=finding.message, type=finding.id)
                failure.text = line(finding)
        notes = [line(f) for f in file_result.findings if f.severity is not Severity.ERROR]
        if notes:
            ET.SubElement(case, "system-out").text = "\n".join(notes)
    ET.indent(suites)
    body = ET.tostring(suites, encoding="unicode")
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + body + "\n"
