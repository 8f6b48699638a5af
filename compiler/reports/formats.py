"""The report formats by name, with JSON, the primary one, that the others are views of."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from fwc import __version__
from fwc.compiler.check import CheckResult
from fwc.compiler.policy.findings import Finding

FORMAT_VERSION = 1


def finding_dict(finding: Finding) -> dict[str, Any]:
    loc = finding.location
    out: dict[str, Any] = {
        "id": finding.id,
        "severity": finding.severity.value,
        "title": finding.title,
        "message": finding.message,
        "file": loc.file,
        "line": loc.line,
        "column": loc.column,
        "rule": finding.rule,
    }
    # Optional keys, present only when the finding has them (FWC030, FWC035).
    if finding.example is not None:
        out["example"] = dict(finding.example)
    if finding.related:
        out["related"] = [
            {"rule": r.rule, "file": r.location.file, "line": r.location.line}
            for r in finding.related
        ]
    return out


def summary(result: CheckResult) -> dict[str, Any]:
    return {
        "files": len(result.files),
        "errors": result.errors,
        "warnings": result.warnings,
        "failed_files": sum(1 for r in result.files if r.errors),
    }


def as_json(result: CheckResult, color: bool = False) -> str:
    doc = {
        "tool": "fwc",
        "version": __version__,
        "format_version": FORMAT_VERSION,
        "findings": [finding_dict(f) for f in result.findings],
        "files": [r.file for r in result.files],
        "summary": summary(result),
    }
    return json.dumps(doc, indent=2) + "\n"


Renderer = Callable[[CheckResult, bool], str]


def renderers() -> dict[str, Renderer]:
    """Format name -> renderer; `color` matters only to text."""
    from fwc.compiler.reports import github as report_github
    from fwc.compiler.reports import junit as report_junit
    from fwc.compiler.reports import sarif as report_sarif
    from fwc.compiler.reports import text as report_text

    return {
        "text": report_text.render,
        "json": as_json,
        "sarif": report_sarif.render,
        "github": report_github.render,
        "junit": report_junit.render,
    }


FORMATS = ("text", "json", "sarif", "github", "junit")


def render(
    result: CheckResult,
    fmt: str,
    color: bool = False,
    fail_on_warn: bool = False,
    seconds: float = 0.0,
) -> str:
    """The report in `fmt`; JUnit alone counts warnings as failures and states the time."""
    if fmt == "junit":
        from fwc.compiler.reports import junit as report_junit

        return report_junit.render(result, color, fail_on_warn=fail_on_warn, seconds=seconds)
    return renderers()[fmt](result, color)
