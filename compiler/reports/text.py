"""The human view of a check run: one line per finding and a summary line."""

from __future__ import annotations

from fwc.compiler.check import CheckResult
from fwc.compiler.policy.findings import Finding, Severity
from fwc.terminal import escape

_COLORS = {Severity.ERROR: "\033[31m", Severity.WARNING: "\033[33m", Severity.INFO: "\033[36m"}
_BOLD = "\033[1m"
_RESET = "\033[0m"


def line(finding: Finding, color: bool = False) -> str:
    """`file:line:col: error FWC020 message [rule]`."""
    severity = finding.severity.value
    if color:
        severity = f"{_COLORS[finding.severity]}{severity}{_RESET}"
    # what came from the user (file name, message, rule) is escaped: only our colours are raw
    location = escape(str(finding.location))
    where = f"{_BOLD}{location}{_RESET}" if color else location
    rule = f" [{escape(finding.rule)}]" if finding.rule else ""
    return f"{where}: {severity} {finding.id} {escape(finding.message)}{rule}"


def _count(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def summary_line(result: CheckResult) -> str:
    files = _count(len(result.files), "file")
    if not result.errors and not result.warnings:
        return f"{files} checked: no findings"
    return (
        f"{files} checked: {_count(result.errors, 'error')}, {_count(result.warnings, 'warning')}"
    )


def render(result: CheckResult, color: bool = False) -> str:
    lines = [line(f, color) for f in result.findings]
    lines.append(summary_line(result))
    return "\n".join(lines) + "\n"
