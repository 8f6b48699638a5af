"""SARIF 2.1.0, for code scanning: the catalog as rules, each finding as a result with a region.

Paths are relative to the repository root (`uriBaseId: %SRCROOT%`), whatever the working
directory, so a run from a subfolder or with absolute paths still lands on the right file.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Sequence
from pathlib import Path, PurePath
from typing import Any
from urllib.parse import quote

from fwc import __version__
from fwc.compiler.check import CheckResult
from fwc.compiler.policy.findings import CATALOG, Finding, Location, Severity

SARIF_SCHEMA = "https://json.schemastore.org/sarif-2.1.0.json"
SRCROOT = "%SRCROOT%"
FINGERPRINT = "fwcFinding/v1"
_LEVEL = {Severity.ERROR: "error", Severity.WARNING: "warning", Severity.INFO: "note"}
_IDS = sorted(CATALOG)
_WARNING_IDS = frozenset(
    {
        "FWC027",
        "FWC028",
        "FWC030",
        "FWC035",
        "FWC036",
        "FWC039",
        "FWC041",
        "FWC043",
        "FWC070",
        "FWC071",
    }
)
_NOTE_IDS = frozenset({"FWC072", "FWC073"})

# id prefix -> the section of fwc's docs that explains the finding (docs/ in fwc's repository)
_DOCS = (
    ("FWC00", "docs/policy.md#the-file"),
    ("FWC04", "docs/rego.md"),
    ("FWC05", "docs/policy.md#what-the-compiler-accepts"),
    ("FWC06", "docs/testing-policies.md"),
    ("FWC07", "docs/testing-policies.md"),
    ("FWC", "docs/policy.md#findings"),
)


def docs_link(rule_id: str) -> str:
    """Where fwc's docs explain `rule_id`: a path inside fwc's repository, with its anchor."""
    return next(link for prefix, link in _DOCS if rule_id.startswith(prefix))


def _rule(rule_id: str) -> dict[str, Any]:
    level = "warning" if rule_id in _WARNING_IDS else "note" if rule_id in _NOTE_IDS else "error"
    title = CATALOG[rule_id]
    link = docs_link(rule_id)
    return {
        "id": rule_id,
        "name": "".join(w.capitalize() for w in re.split(r"[^A-Za-z0-9]+", title)),
        "shortDescription": {"text": title},
        "fullDescription": {"text": f"fwc {rule_id}: {title}."},
        "help": {
            "text": f"{rule_id} ({title}): what it means and how to fix it is in fwc's {link}.",
            "markdown": f"**{rule_id}** {title}: see fwc's [{link}]({link}).",
        },
        "defaultConfiguration": {"level": level},
    }


def repository_root(start: Path | None = None) -> Path:
    """The git work tree that holds `start` (default: the working directory), else `start`."""
    here = (start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / ".git").exists():
            return folder
    return here


def artifact_location(file: str, root: Path) -> dict[str, Any]:
    """`file` relative to `root` under %SRCROOT%; a file outside the root as a file:// URI."""
    path = Path(os.path.abspath(file))
    try:
        relative = path.relative_to(root)
    except ValueError:
        return {"uri": path.as_uri()}
    return {"uri": quote(PurePath(relative).as_posix()), "uriBaseId": SRCROOT}


def _fingerprint(finding: Finding, uri: str) -> str:
    # no line: a finding keeps its identity when lines above it move
    key = "\0".join((finding.id, uri, finding.rule or "", finding.message))
    return hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()[:32]


def _physical(location: Location, root: Path) -> dict[str, Any]:
    physical: dict[str, Any] = {"artifactLocation": artifact_location(location.file, root)}
    if location.line:
        region = {"startLine": location.line}
        if location.column:
            region["startColumn"] = location.column
        physical["region"] = region
    return physical


def _result(finding: Finding, root: Path) -> dict[str, Any]:
    physical = _physical(finding.location, root)
    uri = physical["artifactLocation"]["uri"]
    out: dict[str, Any] = {
        "ruleId": finding.id,
        "ruleIndex": _IDS.index(finding.id),
        "level": _LEVEL[finding.severity],
        "message": {"text": finding.message},
        "locations": [{"physicalLocation": physical}],
        "partialFingerprints": {FINGERPRINT: _fingerprint(finding, uri)},
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
                "physicalLocation": _physical(r.location, root),
                "message": {"text": f"rule `{r.rule}`"},
            }
            for i, r in enumerate(finding.related)
        ]
    return out


def results(findings: list[Finding], root: Path) -> list[dict[str, Any]]:
    """One result per distinct finding; equal fingerprints get an occurrence number."""
    out: list[dict[str, Any]] = []
    seen: set[str] = set()
    occurrences: dict[str, int] = {}
    for finding in findings:
        result = _result(finding, root)
        identity = json.dumps(result, sort_keys=True)
        if identity in seen:
            continue
        seen.add(identity)
        fingerprint = result["partialFingerprints"][FINGERPRINT]
        occurrences[fingerprint] = occurrences.get(fingerprint, 0) + 1
        result["partialFingerprints"][FINGERPRINT] = f"{fingerprint}:{occurrences[fingerprint]}"
        out.append(result)
    return out


def envelope(
    run_results: list[dict[str, Any]], root: Path, artifacts: list[dict[str, Any]] | None = None
) -> dict[str, Any]:
    """A SARIF log of one fwc run: the tool with the whole catalog as rules, and `run_results`."""
    run: dict[str, Any] = {
        "tool": {
            "driver": {
                "name": "fwc",
                "version": __version__,
                "rules": [_rule(i) for i in _IDS],
            }
        },
        "originalUriBaseIds": {SRCROOT: {"uri": root.as_uri().rstrip("/") + "/"}},
        "results": run_results,
    }
    if artifacts is not None:
        run["artifacts"] = artifacts
    return {"$schema": SARIF_SCHEMA, "version": "2.1.0", "runs": [run]}


def sarif(result: CheckResult) -> dict[str, Any]:
    return document([r.file for r in result.files], result.findings)


def document(files: Sequence[str], findings: Sequence[Finding]) -> dict[str, Any]:
    """The SARIF log of one run over `files` (fwc check, fwc diff) that found `findings`."""
    root = repository_root()
    artifacts = [{"location": artifact_location(file, root)} for file in files]
    return envelope(results(list(findings), root), root, artifacts)


def render(result: CheckResult, color: bool = False) -> str:
    return json.dumps(sarif(result), indent=2) + "\n"
