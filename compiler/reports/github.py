"""GitHub Actions workflow commands, so findings annotate the pull request's changed lines."""

from __future__ import annotations

from fwc.compiler.check import CheckResult
from fwc.compiler.policy.findings import Finding, Severity
from fwc.compiler.reports.text import summary_line
from fwc.terminal import escape

_COMMAND = {Severity.ERROR: "error", Severity.WARNING: "warning", Severity.INFO: "notice"}


def _data(text: str) -> str:
    # a newline or CR would end the workflow command; any other control is escaped as text
    encoded = text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")
    return escape(encoded)


def _property(text: str) -> str:
    return _data(text).replace(":", "%3A").replace(",", "%2C")


def annotation(finding: Finding) -> str:
    loc = finding.location
    props = [f"file={_property(loc.file)}"]
    if loc.line:
        props.append(f"line={loc.line}")
        if loc.column:
            props.append(f"col={loc.column}")
    props.append(f"title={_property(finding.id + ' ' + finding.title)}")
    message = finding.message + (f" [{finding.rule}]" if finding.rule else "")
    return f"::{_COMMAND[finding.severity]} {','.join(props)}::{_data(message)}"


def render(result: CheckResult, color: bool = False) -> str:
    lines = [annotation(f) for f in result.findings]
    lines.append(summary_line(result))
    return "\n".join(lines) + "\n"
