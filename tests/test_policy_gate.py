"""The pull-request gate a user copies: it installs a pinned fwc, runs the user's rego/ when
there is one, keeps the SARIF upload away from fork pull requests, and its shell steps work
when run as they are in a policy repository laid out like a user's."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parent.parent
WORKFLOW = REPO / ".github/workflows/policy-gate.yml"
VERSION = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]

POLICY = """\
name: web
default_action: deny
rules:
  - {name: allow_https, priority: 10, action: allow, protocol: tcp, destination_ports: [443]}
"""
# the user's own invariant: every policy must allow ICMP, with a test of its own
REGO = """\
package fwc

import rego.v1

deny contains msg if {
\tnot some_icmp
\tmsg := "policy lets no ICMP through"
}

some_icmp if {
\tsome rule in input.rules
\trule.protocol == "icmp"
}
"""
REGO_TEST = """\
package fwc.icmp_test

import rego.v1

test_no_icmp_is_denied if {
\tcount(data.fwc.deny) == 1 with input.rules as []
}
"""


def workflow() -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load(WORKFLOW.read_text())
    doc["on"] = doc.pop(True)  # YAML 1.1 reads the key `on` as a boolean
    return doc


def steps(job: str) -> dict[str, dict[str, Any]]:
    return {s.get("name", s.get("uses")): s for s in workflow()["jobs"][job]["steps"]}


def test_installs_a_pinned_fwc_not_the_users_repository() -> None:
    package = workflow()["env"]["FWC_PACKAGE"]
    assert package == f"fwc=={VERSION}" or re.fullmatch(r"fwc @ git\+\S+@v\S+", package)
    for job in ("check", "compile"):
        (install,) = [s for s in steps(job).values() if "pip install" in s.get("run", "")]
        assert install["run"].strip() == 'python -m pip install "$FWC_PACKAGE"'


def test_the_users_rego_runs_in_every_check() -> None:
    doc = workflow()
    assert "rego/**" in doc["on"]["pull_request"]["paths"]
    runs = [s.get("run", "") for s in steps("check").values()]
    checks = [line for run in runs for line in run.splitlines() if "fwc check" in line]
    assert checks and all("$FWC_REGO_ARGS" in line for line in checks)
    assert any("--rego-tests" in line for line in checks)


def test_sarif_upload_is_skipped_for_forks() -> None:
    upload = steps("check")["Upload SARIF"]
    assert "head.repo.full_name == github.repository" in upload["if"]
    assert workflow()["jobs"]["check"]["permissions"]["security-events"] == "write"
    assert "security-events: write" in WORKFLOW.read_text().split("name: policy gate")[0]


def run_steps(job: str, cwd: Path, github_env: Path) -> dict[str, subprocess.CompletedProcess[str]]:
    """The job's shell steps in order, as a runner would run them (bash -e), skipping the
    install steps (fwc is installed here already) and honouring `if: env.X != ''`."""
    env = {**os.environ, **workflow()["env"]}
    env["PATH"] = f"{Path(sys.executable).parent}:{env['PATH']}"
    env["GITHUB_ENV"] = str(github_env)
    env.pop("CI", None)
    results: dict[str, subprocess.CompletedProcess[str]] = {}
    for name, step in steps(job).items():
        if "run" not in step or "pip install" in step["run"] or "apt-get" in step["run"]:
            continue
        for line in github_env.read_text().splitlines():
            key, _, value = line.partition("=")
            env[key] = value
        condition = step.get("if", "")
        match = re.fullmatch(r"env\.(\w+) != ''", condition)
        if match and not env.get(match.group(1)):
            continue
        results[name] = subprocess.run(
            ["bash", "-e", "-c", step["run"]],
            cwd=cwd,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
    return results


@pytest.mark.parametrize("with_rego", [True, False])
def test_steps_run_in_a_policy_repository(tmp_path: Path, with_rego: bool) -> None:
    (tmp_path / "policies").mkdir()
    (tmp_path / "policies/web.yaml").write_text(POLICY)
    if with_rego:
        (tmp_path / "rego").mkdir()
        (tmp_path / "rego/icmp.rego").write_text(REGO)
        (tmp_path / "rego/icmp_test.rego").write_text(REGO_TEST)
    github_env = tmp_path / "github_env"
    github_env.write_text("")
    results = run_steps("check", tmp_path, github_env)
    gate = results["Gate (annotations on the pull request)"]
    if with_rego:
        assert results["Rego invariants test themselves"].returncode == 0
        assert "PASS: 1/1" in results["Rego invariants test themselves"].stdout
        # the user's invariant fails the policy
        assert gate.returncode == 1 and "policy lets no ICMP through" in gate.stdout
    else:
        assert "Rego invariants test themselves" not in results
        assert gate.returncode == 0, gate.stdout + gate.stderr
    for report in ("fwc.sarif", "fwc-junit.xml", "fwc-findings.json"):
        assert (tmp_path / report).stat().st_size > 0


def test_compile_job_writes_each_artifact_with_its_digest(tmp_path: Path) -> None:
    (tmp_path / "policies").mkdir()
    (tmp_path / "policies/web.yaml").write_text(POLICY)
    (tmp_path / "policies/web.cases.yaml").write_text("cases: []\n")
    github_env = tmp_path / "github_env"
    github_env.write_text("")
    results = run_steps("compile", tmp_path, github_env)
    assert all(r.returncode == 0 for r in results.values()), results
    dist = tmp_path / "dist"
    assert sorted(p.name for p in dist.iterdir()) == ["SHA256SUMS", "web.o", "web.o.sha256"]
    check = subprocess.run(["sha256sum", "-c", "web.o.sha256"], cwd=dist, capture_output=True)
    assert check.returncode == 0
