"""SARIF 2.1.0, for code scanning: the catalog as rules, each finding as a result with a region."""

from __future__ import annotations

import json
from pathlib import PurePath
from typing import Any
from urllib.parse import quote

from fwc import __version__
from fwc.compiler.check import CheckResult
from fwc.compiler.policy.findings import CATALOG, Finding, Location, Severity

SARIF_SCHEMA = "https://json.schemastore.org/sarif-2.1.0.json"
_LEVEL = {Severity.ERROR: "error", Severity.WARNING: "warning", Severity.INFO: "note"}
_IDS = sorted(CATALOG)
_WARNING_IDS = frozenset({"FWC027", "FWC028", "FWC030", "FWC035", "FWC041"})


def _rule(rule_id: str) -> dict[str, Any]:
    level = "warning" if rule_id in _WARNING_IDS else "error"
    return {
        "id": rule_id,
        "name": "".join(w.capitalize() for w in CATALOG[rule_id].replace("-", " ").split()),
        "shortDescription": {"text": CATALOG[rule_id]},
        "defaultConfiguration": {"level": level},
    }


def _uri(file: str) -> str:
    return quote(PurePath(file).as_posix())


def _physical(location: Location) -> dict[str, Any]:
    physical: dict[str, Any] = {"artifactLocation": {"uri": _uri(location.file)}}
    if location.line:
        region = {"startLine": location.line}
        if location.column:
            region["startColumn"] = location.column
        physical["region"] = region
    return physical


def _result(finding: Finding) -> dict[str, Any]:
    physical = _physical(finding.location)
    out: dict[str, Any] = {
        "ruleId": finding.id,
        "ruleIndex": _IDS.index(finding.id),
        "level": _LEVEL[finding.severity],
        "message": {"text": finding.message},
        "locations": [{"physicalLocation": physical}],
    }
    properties: dict[str, Any] = {}
    if finding.rule:
        properties["policyRule"] = finding.rule
    if finding.example is not None:
        properties["examplePacket"] = dict(finding.example)
    if properties:
        out["properties"] = properties
    if finding.related:
        out["relatedLocations"] = [
            {
                "id": i,
                "physicalLocation": _physical(r.location),
                "message": {"text": f"rule `{r.rule}`"},
            }
            for i, r in enumerate(finding.related)
        ]
    return out


def sarif(result: CheckResult) -> dict[str, Any]:
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
                "artifacts": [{"location": {"uri": _uri(r.file)}} for r in result.files],
                "results": [_result(f) for f in result.findings],
            }
        ],
    }


def render(result: CheckResult, color: bool = False) -> str:
    return json.dumps(sarif(result), indent=2) + "\n"
