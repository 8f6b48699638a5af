"""The pull-request workflow .github/workflows/policy-diff.yml: its shape, and every script it
runs, run as GitHub runs them (bash -eo pipefail) on a scratch repository with two commits."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.test_diff_cli import OLD, WIDER_SSH

ROOT = Path(__file__).resolve().parent.parent
WORKFLOW = ROOT / ".github" / "workflows" / "policy-diff.yml"
GATE = ROOT / ".github" / "workflows" / "policy-gate.yml"


def load(path: Path) -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load(path.read_text(encoding="utf-8"))
    doc["on"] = doc.pop(True)  # YAML 1.1 reads the key `on` as true
    return doc


def steps() -> list[dict[str, Any]]:
    result: list[dict[str, Any]] = load(WORKFLOW)["jobs"]["diff"]["steps"]
    return result


def test_shape_matches_the_gate_workflow() -> None:
    doc, gate = load(WORKFLOW), load(GATE)
    assert "pull_request" in doc["on"]
    for key in ("FWC_PACKAGE", "POLICY_DIR", "NO_COLOR"):
        assert doc["env"][key] == gate["env"][key]
    assert doc["env"]["BASE"] == "origin/${{ github.base_ref }}"
    assert doc["permissions"] == {"contents": "read"}
    assert doc["jobs"]["diff"]["permissions"]["security-events"] == "write"
    checkout = steps()[0]
    assert checkout["uses"] == "actions/checkout@v4" and checkout["with"]["fetch-depth"] == 0
    uses = {s["uses"].split("@")[0]: s for s in steps() if "uses" in s}
    assert uses["github/codeql-action/upload-sarif"]["with"]["sarif_file"] == "fwc-diff.sarif"
    scripts = "\n".join(s.get("run", "") for s in steps())
    assert "${{" not in scripts, "expressions go through env, never into a script"
    assert '>> "$GITHUB_STEP_SUMMARY"' in scripts
    for command in (
        'fwc diff --base "$BASE" "$POLICY_DIR" --format markdown',
        'fwc diff --base "$BASE" "$POLICY_DIR" --format sarif',
        'fwc check --format github --no-rego "$POLICY_DIR"',
    ):
        assert command in scripts


def _git(repo: Path, *argv: str) -> str:
    done = subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@t", *argv],
        cwd=repo,
        check=True,
        capture_output=True,
        text=True,
    )
    return done.stdout.strip()


@pytest.fixture
def pull_request(tmp_path: Path) -> Path:
    """A checkout of a pull request: main has the policy, the branch widens SSH."""
    repo = tmp_path / "repo"
    (repo / "policies").mkdir(parents=True)
    (repo / "policies" / "web.yaml").write_text(OLD)
    _git(repo, "init", "-q", "-b", "main")
    _git(repo, "add", ".")
    _git(repo, "commit", "-qm", "base")
    _git(repo, "update-ref", "refs/remotes/origin/main", "HEAD")
    _git(repo, "checkout", "-qb", "widen-ssh")
    (repo / "policies" / "web.yaml").write_text(WIDER_SSH)
    _git(repo, "commit", "-qam", "ssh from the office too")
    return repo


def _run(script: str, repo: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", "--noprofile", "--norc", "-eo", "pipefail", "-c", script],
        cwd=repo,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )


def _env(repo: Path, fail_on: str) -> dict[str, str]:
    env = {k: v for k, v in load(WORKFLOW)["env"].items()}
    env["BASE"] = env["BASE"].replace("${{ github.base_ref }}", "main")
    env["DIFF_FAIL_ON"] = fail_on
    env["GITHUB_STEP_SUMMARY"] = str(repo / "summary.md")
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"
    env["HOME"] = os.environ.get("HOME", "/root")
    return env


def test_every_script_runs_on_a_pull_request(pull_request: Path) -> None:
    repo = pull_request
    env = _env(repo, "allowed")
    codes: dict[str, int] = {}
    for step in steps():
        if "run" not in step or "pip install" in step["run"]:
            continue
        done = _run(step["run"], repo, env)
        codes[step["name"]] = done.returncode
        assert "usage:" not in done.stderr, (step["name"], done.stderr)
        assert "Traceback" not in done.stderr, (step["name"], done.stderr)
    assert codes["Semantic diff to the job summary"] == 0  # a change is no failure
    assert codes["Changes for code scanning and as JSON"] == 0
    assert codes["Annotate shadowed rules"] == 0
    assert codes["Fail on the changes DIFF_FAIL_ON names"] == 1  # SSH newly allowed
    summary = (repo / "summary.md").read_text(encoding="utf-8")
    assert "### `origin/main:policies/web.yaml` → `policies/web.yaml`" in summary
    assert "192.0.2.0/24" in summary and "allow_ssh" in summary
    sarif = json.loads((repo / "fwc-diff.sarif").read_text(encoding="utf-8"))
    [result] = sarif["runs"][0]["results"]
    physical = result["locations"][0]["physicalLocation"]
    assert physical["artifactLocation"]["uri"] == "policies/web.yaml"
    assert physical["region"]["startLine"] == 5
    assert result["ruleId"] == "FWC070"
    [change] = json.loads((repo / "fwc-diff.json").read_text(encoding="utf-8"))["changes"]
    assert change["new"]["rule"] == "allow_ssh"
    assert (repo / "fwc-check.txt").read_text().endswith("1 file checked: no findings\n")


def test_an_error_fails_the_summary_step(pull_request: Path) -> None:
    env = _env(pull_request, "")
    env["BASE"] = "origin/no-such-branch"
    [step] = [s for s in steps() if s.get("name") == "Semantic diff to the job summary"]
    assert _run(step["run"], pull_request, env).returncode != 0
