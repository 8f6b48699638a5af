"""`fwc diff --format sarif`: one result per change on the line that causes it, a rule id per
kind of change, valid SARIF 2.1.0 with paths code scanning can place."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from fwc.compiler.cli import main
from tests.test_diff_cli import OLD, WIDER_SSH
from tests.test_reports import SARIF_MIN_SCHEMA

NO_WEB = OLD.replace("destination_ports: [80, 443]", "destination_ports: [443]")
NO_SSH = OLD.replace(
    """  - name: allow_ssh
    priority: 10
    action: allow
    protocol: tcp
    source_cidrs: ["10.20.0.0/16"]
    destination_ports: [22]
""",
    "",
)
LOGGED = OLD.replace(
    "destination_ports: [80, 443]\n", "destination_ports: [80, 443]\n    log: true\n"
)
RENAMED = OLD.replace("name: allow_web", "name: allow_http")


def sarif(capsys: pytest.CaptureFixture[str], *argv: str | Path) -> tuple[int, dict[str, Any]]:
    code = main(["diff", *map(str, argv), "--format", "sarif"])
    doc = json.loads(capsys.readouterr().out)
    jsonschema.Draft202012Validator(SARIF_MIN_SCHEMA).validate(doc)
    return code, doc


def places(doc: dict[str, Any]) -> set[tuple[str, str, int]]:
    out = set()
    for result in doc["runs"][0]["results"]:
        physical = result["locations"][0]["physicalLocation"]
        line = physical.get("region", {}).get("startLine", 0)
        out.add((result["ruleId"], physical["artifactLocation"]["uri"], line))
    return out


@pytest.mark.parametrize(
    ("new_text", "expected"),
    [
        (WIDER_SSH, {("FWC070", "new.yaml", 5)}),  # the widened rule, newly allowing
        (NO_WEB, {("FWC071", "new.yaml", 11)}),  # the narrowed rule, at its new line
        (NO_SSH, {("FWC071", "old.yaml", 5)}),  # a removed rule, at its old line
        (LOGGED, {("FWC072", "new.yaml", 11)}),
        (RENAMED, {("FWC073", "new.yaml", 11)}),
        (OLD, set()),
    ],
)
def test_each_change_sits_on_the_line_that_causes_it(
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    new_text: str,
    expected: set[tuple[str, str, int]],
) -> None:
    monkeypatch.chdir(tmp_path)
    Path("old.yaml").write_text(OLD)
    Path("new.yaml").write_text(new_text)
    code, doc = sarif(capsys, "old.yaml", "new.yaml")
    assert places(doc) == expected
    assert code == (1 if any(rid in ("FWC070", "FWC071") for rid, _, _ in expected) else 0)
    run = doc["runs"][0]
    rules = {r["id"]: r for r in run["tool"]["driver"]["rules"]}
    for result in run["results"]:
        assert run["tool"]["driver"]["rules"][result["ruleIndex"]]["id"] == result["ruleId"]
        assert result["message"]["text"].count(" -> ") >= 1
    assert rules["FWC070"]["defaultConfiguration"]["level"] == "warning"
    assert rules["FWC073"]["defaultConfiguration"]["level"] == "note"


def test_message_names_region_both_deciders_and_an_example(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    Path("old.yaml").write_text(OLD)
    Path("new.yaml").write_text(WIDER_SSH)
    _, doc = sarif(capsys, "old.yaml", "new.yaml")
    [result] = doc["runs"][0]["results"]
    assert result["message"]["text"] == (
        "tcp 192.0.2.0/24 -> any dport 22: deny by the default action -> allow by rule "
        '`allow_ssh` (new.yaml:5:5); e.g. {proto: "tcp", src: "192.0.2.1", dst: "0.0.0.1", '
        'sport: 12345, dport: 22, flags: "SYN"}'
    )
    assert result["properties"] == {"policyRule": "allow_ssh"}


def _git(repo: Path, *argv: str) -> None:
    subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@t", *argv], cwd=repo, check=True
    )


def test_base_results_name_work_tree_paths(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With --base the old file is `REF:path`; results on removed rules and removed files
    still name the path in the repository, relative as code scanning wants it."""
    repo = tmp_path / "repo"
    (repo / "pol").mkdir(parents=True)
    (repo / "pol" / "web.yaml").write_text(OLD)
    (repo / "pol" / "gone.yaml").write_text(OLD.replace("name: web", "name: gone"))
    _git(repo, "init", "-q")
    _git(repo, "add", ".")
    _git(repo, "commit", "-qm", "base")
    (repo / "pol" / "web.yaml").write_text(NO_SSH)
    (repo / "pol" / "gone.yaml").unlink()
    monkeypatch.chdir(repo)
    code, doc = sarif(capsys, "--base", "HEAD", "pol")
    assert code == 1
    found = places(doc)
    assert ("FWC071", "pol/web.yaml", 5) in found
    # The removed policy lets everything through: newly allowed, on the old default's file.
    assert {uri for _, uri, _ in found} == {"pol/web.yaml", "pol/gone.yaml"}
    assert all(not uri.startswith(("/", "HEAD")) for _, uri, _ in found)


def test_a_policy_with_errors_is_sarif_of_its_errors(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    Path("old.yaml").write_text(OLD)
    Path("new.yaml").write_text(OLD.replace("action: allow", "action: alow", 1))
    code, doc = sarif(capsys, "old.yaml", "new.yaml")
    assert code == 1
    assert places(doc) == {("FWC014", "new.yaml", 7)}
