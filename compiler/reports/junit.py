"""JUnit XML: one test case per finding (with file and line), one passing case per clean file.

Errors fail; warnings fail too under `--fail-on-warn`, so the counts agree with the exit code.
Characters XML 1.0 cannot carry (control characters, lone surrogates) are written as `\\xNN`.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET

from fwc.compiler.check import CheckResult, FileResult
from fwc.compiler.policy.findings import Finding, Severity
from fwc.compiler.reports.text import line

# what XML 1.0's Char production excludes (tab, LF and CR are allowed)
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


def xml_text(text: str) -> str:
    """`text` with every character XML 1.0 forbids written as a visible escape."""
    return _NOT_XML.sub(lambda m: f"\\x{ord(m.group()):02x}", text)


def _fails(finding: Finding, fail_on_warn: bool) -> bool:
    return finding.severity is Severity.ERROR or (
        fail_on_warn and finding.severity is Severity.WARNING
    )


def _case(suite: ET.Element, finding: Finding, fail_on_warn: bool) -> None:
    loc = finding.location
    where = f" ({finding.rule})" if finding.rule else ""
    attrs = {
        "classname": xml_text(loc.file),
        "name": xml_text(f"{finding.id} {finding.title}{where}"),
        "file": xml_text(loc.file),
        "time": "0",
    }
    if loc.line:
        attrs["line"] = str(loc.line)
    case = ET.SubElement(suite, "testcase", attrs)
    if _fails(finding, fail_on_warn):
        failure = ET.SubElement(
            case,
            "failure",
            message=xml_text(finding.message),
            type=f"{finding.id} {finding.severity.value}",
        )
        failure.text = xml_text(line(finding))
    else:
        ET.SubElement(case, "system-out").text = xml_text(line(finding))


def _clean_case(suite: ET.Element, file_result: FileResult) -> None:
    name = xml_text(file_result.file)
    ET.SubElement(suite, "testcase", classname=name, name="no findings", file=name, time="0")


def render(
    result: CheckResult, color: bool = False, fail_on_warn: bool = False, seconds: float = 0.0
) -> str:
    """The report; `seconds` is how long the whole check took (findings are not timed alone)."""
    suites = ET.Element("testsuites", name="fwc check")
    suite = ET.SubElement(suites, "testsuite", name="fwc check")
    tests = failures = 0
    for file_result in result.files:
        for finding in sorted(file_result.findings, key=Finding.sort_key):
            _case(suite, finding, fail_on_warn)
            failures += _fails(finding, fail_on_warn)
        tests += len(file_result.findings)
        if not file_result.findings:
            _clean_case(suite, file_result)
            tests += 1
    counts = {
        "tests": str(tests),
        "failures": str(failures),
        "errors": "0",
        "skipped": "0",
        "time": f"{seconds:.3f}",
    }
    suite.attrib.update(counts)
    suites.attrib.update({k: v for k, v in counts.items() if k != "skipped"})
    ET.indent(suites)
    body = ET.tostring(suites, encoding="unicode")
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + body + "\n"
