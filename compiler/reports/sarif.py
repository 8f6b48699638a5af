"""SARIF 2.1.0, for code scanning: the catalog as rules, each finding as a result with a region."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import PurePath
from typing import Any
from urllib.parse import quote

from fwc import __version__
from fwc.compiler.check import CheckResult
from fwc.compiler.policy.findings import CATALOG, Finding, Severity

SARIF_SCHEMA = "https://json.schemastore.org/sarif-2.1.0.json"
_LEVEL = {Severity.ERROR: "error", Severity.WARNING: "warning", Severity.INFO: "note"}
_IDS = sorted(CATALOG)
_WARNING_IDS = frozenset({"FWC027", "FWC028", "FWC030", "FWC041", "FWC070", "FWC071"})
_NOTE_IDS = frozenset({"FWC072", "FWC073"})


def _rule(rule_id: str) -> dict[str, Any]:
    level = "warning" if rule_id in _WARNING_IDS else "note" if rule_id in _NOTE_IDS else "error"
    return {
        "id": rule_id,
        "name": "".join(w.capitalize() for w in CATALOG[rule_id].replace("-", " ").split()),
        "shortDescription": {"text": CATALOG[rule_id]},
        "defaultConfiguration": {"level": level},
    }


def _uri(file: str) -> str:
    return quote(PurePath(file).as_posix())


def _result(finding: Finding) -> dict[str, Any]:
    physical: dict[str, Any] = {"artifactLocation": {"uri": _uri(finding.location.file)}}
    if finding.location.line:
        region = {"startLine": finding.location.line}
        if finding.location.column:
            region["startColumn"] = finding.location.column
        physical["region"] = region
    out: dict[str, Any] = {
        "ruleId": finding.id,
        "ruleIndex": _IDS.index(finding.id),
        "level": _LEVEL[finding.severity],
        "message": {"text": finding.message},
        "locations": [{"physicalLocation": physical}],
    }
    if finding.rule:
        out["properties"] = {"policyRule": finding.rule}
    return out


def sarif(result: CheckResult) -> dict[str, Any]:
    return document([r.file for r in result.files], result.findings)


def document(files: Sequence[str], findings: Sequence[Finding]) -> dict[str, Any]:
    """The SARIF log of one run over `files` (fwc check, fwc diff) that found `findings`."""
    return {
        "$schema": SARIF_SCHEMA,
        "version": "2.1.0",
        "runs": [
            {
                "tool": {
                    "driver": {
                        "name": "fwc",
                        "version": __version__,
                        "rules": [_rule(i) for i in _IDS],
                    }
                },
                "artifacts": [{"location": {"uri": _uri(file)}} for file in files],
                "results": [_result(f) for f in findings],
            }
        ],
    }


def render(result: CheckResult, color: bool = False) -> str:
    return json.dumps(sarif(result), indent=2) + "\n"
