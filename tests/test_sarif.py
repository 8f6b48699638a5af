"""SARIF 2.1.0 from `fwc check`: valid against the OASIS schema, paths from the repository
root whatever the working directory, fingerprints, rule help, no repeated results."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from fwc.compiler.check import CheckResult, FileResult
from fwc.compiler.policy.findings import CATALOG, Location, error, warning
from fwc.compiler.reports import sarif

REPO = Path(__file__).resolve().parent.parent
SCHEMA = json.loads((REPO / "tests/fixtures/sarif/sarif-schema-2.1.0.json").read_text())
FWC = str(Path(sys.executable).parent / "fwc")

DUPLICATE = """\
name: dup
default_action: deny
rules:
  - {name: a, priority: 10, action: allow, protocol: tcp, destination_ports: [22]}
  - {name: a, priority: 10, action: allow, protocol: tcp, destination_ports: [23]}
"""


def validate(doc: dict[str, Any]) -> None:
    jsonschema.Draft4Validator(SCHEMA).validate(doc)


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A git work tree with a policy two folders down."""
    subprocess.run(["git", "init", "-q", str(tmp_path / "repo")], check=True)
    policy = tmp_path / "repo/net/policies/dup.yaml"
    policy.parent.mkdir(parents=True)
    policy.write_text(DUPLICATE)
    return tmp_path / "repo"


def check_sarif(cwd: Path, *paths: str) -> dict[str, Any]:
    proc = subprocess.run(
        [FWC, "check", "--no-rego", "--format", "sarif", *paths],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 1, proc.stderr
    doc: dict[str, Any] = json.loads(proc.stdout)
    validate(doc)
    return doc


@pytest.mark.parametrize(
    ("where", "path"),
    [
        ("", "net/policies/dup.yaml"),
        ("net", "policies/dup.yaml"),
        ("net/policies", "dup.yaml"),
        ("net/policies", "ABSOLUTE"),
    ],
)
def test_uri_is_relative_to_the_repository_root(repo: Path, where: str, path: str) -> None:
    target = str(repo / "net/policies/dup.yaml") if path == "ABSOLUTE" else path
    doc = check_sarif(repo / where, target)
    (run,) = doc["runs"]
    assert run["originalUriBaseIds"]["%SRCROOT%"]["uri"] == repo.resolve().as_uri() + "/"
    locations = [r["locations"][0]["physicalLocation"]["artifactLocation"] for r in run["results"]]
    assert locations and all(
        loc == {"uri": "net/policies/dup.yaml", "uriBaseId": "%SRCROOT%"} for loc in locations
    )
    assert run["artifacts"] == [{"location": locations[0]}]


def test_outside_a_repository_the_working_directory_is_the_root(tmp_path: Path) -> None:
    (tmp_path / "p").mkdir()
    (tmp_path / "p/dup.yaml").write_text(DUPLICATE)
    doc = check_sarif(tmp_path, "p/dup.yaml")
    loc = doc["runs"][0]["results"][0]["locations"][0]["physicalLocation"]["artifactLocation"]
    assert loc == {"uri": "p/dup.yaml", "uriBaseId": "%SRCROOT%"}


def test_a_file_outside_the_root_is_an_absolute_file_uri(tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    outside = tmp_path / "elsewhere/a b.yaml"
    assert sarif.artifact_location(str(outside), root) == {"uri": outside.as_uri()}
    assert sarif.artifact_location("x/ü.yaml", Path.cwd()) == {
        "uri": "x/%C3%BC.yaml",
        "uriBaseId": "%SRCROOT%",
    }


E = error("FWC020", "rule name `a` is already used", Location("p/a.yaml", 9, 11), "a")
W = warning("FWC028", "equal priority: a,b", Location("p/a.yaml", 3, 5), "b")


def test_no_duplicate_results_and_fingerprints_are_unique() -> None:
    same_message_elsewhere = error("FWC020", E.message, Location("p/a.yaml", 12, 3), "a")
    result = CheckResult((FileResult("p/a.yaml", (W, E, E, same_message_elsewhere, E)),))
    doc = sarif.sarif(result)
    validate(doc)
    results = doc["runs"][0]["results"]
    assert len(results) == 3
    prints = [r["partialFingerprints"][sarif.FINGERPRINT] for r in results]
    assert len(set(prints)) == 3
    assert all(re.fullmatch(r"[0-9a-f]{32}:[0-9]+", p) for p in prints)
    # the same finding moved down by a line keeps its fingerprint
    moved = error("FWC020", E.message, Location("p/a.yaml", 10, 11), "a")
    again = sarif.sarif(CheckResult((FileResult("p/a.yaml", (moved,)),)))
    assert (
        again["runs"][0]["results"][0]["partialFingerprints"] == results[1]["partialFingerprints"]
    )


def test_every_rule_has_help_whose_docs_link_exists() -> None:
    rules = sarif.sarif(CheckResult(()))["runs"][0]["tool"]["driver"]["rules"]
    assert [r["id"] for r in rules] == sorted(CATALOG)
    for rule in rules:
        link = sarif.docs_link(rule["id"])
        assert link in rule["help"]["text"] and f"]({link})" in rule["help"]["markdown"]
        page, _, anchor = link.partition("#")
        text = (REPO / page).read_text()
        headings = {
            re.sub(r"[^a-z0-9 -]", "", h.lower()).replace(" ", "-")
            for h in re.findall(r"^#+ (.*)$", text, re.M)
        }
        assert not anchor or anchor in headings, link


def test_results_point_at_their_rule() -> None:
    doc = sarif.sarif(CheckResult((FileResult("p/a.yaml", (W, E)),)))
    run = doc["runs"][0]
    rules = run["tool"]["driver"]["rules"]
    assert [rules[r["ruleIndex"]]["id"] for r in run["results"]] == ["FWC028", "FWC020"]
    assert [r["level"] for r in run["results"]] == ["warning", "error"]
    assert run["results"][1]["properties"] == {"policyRule": "a"}


def test_broken_examples_validate(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(REPO)
    doc = check_sarif(REPO, "tests/broken")
    assert len(doc["runs"][0]["results"]) >= len(os.listdir(REPO / "tests/broken")) - 1
