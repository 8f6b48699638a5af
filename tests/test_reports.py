"""Report views: JSON fields, text lines, GitHub commands, JUnit XML and SARIF 2.1.0 structure."""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
from pathlib import Path

import jsonschema
import pytest

from fwc.compiler.check import CheckResult, FileResult
from fwc.compiler.policy.findings import CATALOG, Finding, Location, error, warning
from fwc.compiler.reports.formats import FORMATS, render
from fwc.compiler.reports.github import annotation
from fwc.compiler.reports.text import line

ROOT = Path(__file__).resolve().parent.parent

E = error("FWC020", "rule name `a` is already used", Location("p/a.yaml", 9, 11), "a")
W = warning("FWC028", "equal priority, 50%: a,b", Location("p/a.yaml", 3, 5), "b")
L = error("FWC006", "the policy file is empty", Location("p/empty.yaml"))
RESULT = CheckResult(
    (
        FileResult("p/a.yaml", (W, E)),
        FileResult("p/empty.yaml", (L,)),
        FileResult("p/ok.yaml", ()),
    )
)

# The parts of the SARIF 2.1.0 schema (sarif-schema-2.1.0.json) that a consumer
# such as GitHub code scanning relies on, written down from the specification.
SARIF_MIN_SCHEMA = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "required": ["version", "runs"],
    "properties": {
        "version": {"const": "2.1.0"},
        "$schema": {"type": "string", "format": "uri"},
        "runs": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["tool"],
                "properties": {
                    "tool": {
                        "type": "object",
                        "required": ["driver"],
                        "properties": {
                            "driver": {
                                "type": "object",
                                "required": ["name"],
                                "properties": {
                                    "name": {"type": "string"},
                                    "rules": {
                                        "type": "array",
                                        "items": {
                                            "type": "object",
                                            "required": ["id"],
                                            "properties": {
                                                "id": {"type": "string"},
                                                "shortDescription": {"$ref": "#/$defs/message"},
                                                "defaultConfiguration": {
                                                    "type": "object",
                                                    "properties": {
                                                        "level": {"$ref": "#/$defs/level"}
                                                    },
                                                },
                                            },
                                        },
                                    },
                                },
                            }
                        },
                    },
                    "results": {
                        "type": "array",
                        "items": {
                            "type": "object",
                            "required": ["message"],
                            "properties": {
                                "ruleId": {"type": "string"},
                                "ruleIndex": {"type": "integer", "minimum": -1},
                                "level": {"$ref": "#/$defs/level"},
                                "message": {"$ref": "#/$defs/message"},
                                "locations": {
                                    "type": "array",
                                    "items": {
                                        "type": "object",
                                        "properties": {
                                            "physicalLocation": {
                                                "type": "object",
                                                "properties": {
                                                    "artifactLocation": {
                                                        "type": "object",
                                                        "properties": {"uri": {"type": "string"}},
                                                    },
                                                    "region": {
                                                        "type": "object",
                                                        "properties": {
                                                            "startLine": {
                                                                "type": "integer",
                                                                "minimum": 1,
                                                            },
                                                            "startColumn": {
                                                                "type": "integer",
                                                                "minimum": 1,
                                                            },
                                                        },
                                                    },
                                                },
                                            }
                                        },
                                    },
                                },
                            },
                        },
                    },
                },
            },
        },
    },
    "$defs": {
        "level": {"enum": ["none", "note", "warning", "error"]},
        "message": {
            "type": "object",
            "anyOf": [{"required": ["text"]}, {"required": ["id"]}],
            "properties": {"text": {"type": "string"}},
        },
    },
}


def test_json_has_every_field_and_a_summary() -> None:
    report = json.loads(render(RESULT, "json"))
    assert report["findings"][0] == {
        "id": "FWC028",
        "severity": "warning",
        "title": CATALOG["FWC028"],
        "message": "equal priority, 50%: a,b",
        "file": "p/a.yaml",
        "line": 3,
        "column": 5,
        "rule": "b",
    }
    assert [f["id"] for f in report["findings"]] == ["FWC028", "FWC020", "FWC006"]
    assert report["summary"] == {"files": 3, "errors": 2, "warnings": 1, "failed_files": 2}


@pytest.mark.parametrize(
    ("finding", "text"),
    [
        (E, "p/a.yaml:9:11: error FWC020 rule name `a` is already used [a]"),
        (L, "p/empty.yaml: error FWC006 the policy file is empty"),
    ],
)
def test_text_line(finding: Finding, text: str) -> None:
    assert line(finding) == text


def test_text_colour_only_when_asked() -> None:
    assert "\033[31merror" in line(E, color=True)
    assert render(RESULT, "text").splitlines()[-1] == "3 files checked: 2 errors, 1 warning"


@pytest.mark.parametrize(
    ("finding", "command"),
    [
        (
            E,
            "::error file=p/a.yaml,line=9,col=11,title=FWC020 duplicate rule name::"
            "rule name `a` is already used [a]",
        ),
        (
            W,
            "::warning file=p/a.yaml,line=3,col=5,title=FWC028 rules with equal priority::"
            "equal priority, 50%25: a,b [b]",
        ),
        (L, "::error file=p/empty.yaml,title=FWC006 empty policy file::the policy file is empty"),
    ],
)
def test_github_annotation(finding: Finding, command: str) -> None:
    assert annotation(finding) == command


def test_github_escapes_properties_and_newlines() -> None:
    odd = error("FWC001", "two\nlines", Location("a,b:c.yaml", 1, 1))
    assert annotation(odd) == (
        "::error file=a%2Cb%3Ac.yaml,line=1,col=1,title=FWC001 YAML syntax error::two%0Alines"
    )


def test_junit_one_case_per_finding_and_per_clean_file() -> None:
    root = ET.fromstring(render(RESULT, "junit"))
    suite = root.find("testsuite")
    assert suite is not None and suite.get("tests") == "4" and suite.get("failures") == "2"
    cases = [(c.get("file"), c.get("line"), c.find("failure") is not None) for c in suite]
    assert cases == [
        ("p/a.yaml", "3", False),
        ("p/a.yaml", "9", True),
        ("p/empty.yaml", None, True),
        ("p/ok.yaml", None, False),
    ]
    assert "FWC028" in (suite[0].findtext("system-out") or "")


def test_sarif_is_valid_2_1_0() -> None:
    doc = json.loads(render(RESULT, "sarif"))
    jsonschema.Draft202012Validator(SARIF_MIN_SCHEMA).validate(doc)
    run = doc["runs"][0]
    rules = run["tool"]["driver"]["rules"]
    assert {r["id"] for r in rules} == set(CATALOG)
    for result in run["results"]:
        assert rules[result["ruleIndex"]]["id"] == result["ruleId"]
    first = run["results"][0]
    assert first["level"] == "warning"
    assert first["locations"][0]["physicalLocation"] == {
        "artifactLocation": {"uri": "p/a.yaml", "uriBaseId": "%SRCROOT%"},
        "region": {"startLine": 3, "startColumn": 5},
    }
    assert "region" not in run["results"][2]["locations"][0]["physicalLocation"]


@pytest.mark.parametrize("fmt", FORMATS)
def test_every_format_renders_an_empty_run(fmt: str) -> None:
    assert render(CheckResult(()), fmt)


def test_sarif_default_levels_are_the_documented_severities() -> None:
    """Each finding's SARIF default level is the severity docs/policy.md's table gives it."""
    table = (ROOT / "docs" / "policy.md").read_text(encoding="utf-8")
    documented = dict(re.findall(r"^\| (FWC\d{3}) \| ([a-z ]+) \|", table, re.MULTILINE))
    rules = json.loads(render(RESULT, "sarif"))["runs"][0]["tool"]["driver"]["rules"]
    levels = {r["id"]: r["defaultConfiguration"]["level"] for r in rules}
    assert set(documented) <= set(levels)
    for rule_id, severity in documented.items():
        assert levels[rule_id] in severity.split(" or "), rule_id
