"""A built wheel (not the editable checkout) carries the templates, schema and Rego and runs."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

from tests.conftest import ROOT


def test_wheel_ships_its_data_and_runs_from_another_directory(tmp_path: Path) -> None:
    wheels = tmp_path / "wheels"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(wheels), str(ROOT)],
        check=True,
        capture_output=True,
    )
    (wheel,) = wheels.glob("fwc-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for needed in (
        "fwc/compiler/policy/policy.schema.json",
        "fwc/templates/bpf/constants.c.j2",
        "fwc/templates/bpf/tables.c.j2",
        "fwc/templates/bpf/fwc_parse.h",
        "fwc/rego/default_action.rego",
        "fwc/loader/cli.py",
    ):
        assert needed in names, needed

    site = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(site), wheel],
        check=True,
        capture_output=True,
    )
    # The wheel's copy comes first on the path; dependencies come from this venv.
    env = {**os.environ, "PYTHONPATH": str(site)}
    work = tmp_path / "elsewhere"
    work.mkdir()
    policy = ROOT / "policies" / "edge-web.yaml"

    def fwc(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "fwc.compiler.cli", *args],
            cwd=work,
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )

    where = subprocess.run(
        [sys.executable, "-c", "import fwc; print(fwc.__file__)"],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    assert where.stdout.startswith(str(site))
    assert fwc("check", str(policy)).returncode == 0
    assert '"$schema"' in fwc("schema").stdout
    assert "PASS" in fwc("check", "--rego-tests").stdout
    built = fwc("compile", str(policy), "-o", str(work / "fw.o"), "--no-cache")
    assert built.returncode == 0, built.stderr
    assert (work / "fw.o").stat().st_size > 0
