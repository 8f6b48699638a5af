"""The README's "Deploy to a fleet" commands, run as written in a copy of the repository,
with /etc moved under a temporary directory and without `kubectl apply` and `systemctl`
(they need a cluster and a running systemd)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
NOT_HERE = ("kubectl apply", "systemctl ")


def readme_commands() -> list[str]:
    text = (REPO / "README.md").read_text()
    section = text.split("## Deploy to a fleet", 1)[1].split("\n## ", 1)[0]
    (block,) = re.findall(r"```sh\n(.*?)```", section, re.S)
    lines = [line.split("#", 1)[0].strip() for line in block.splitlines()]
    return [line for line in lines if line]


def test_readme_deploy_commands_run(tmp_path: Path) -> None:
    work = tmp_path / "repo"
    for folder in ("policies", "deploy"):
        shutil.copytree(REPO / folder, work / folder)
    etc = tmp_path / "etc"
    (etc / "systemd/system").mkdir(parents=True)  # there on any systemd host
    env = {**os.environ, "PATH": f"{BIN}:{os.environ['PATH']}"}
    commands = readme_commands()
    assert any(c.startswith("kubectl kustomize") for c in commands)
    assert any(c.startswith("systemd-analyze verify") for c in commands)
    ran = 0
    for command in commands:
        if command.startswith(NOT_HERE):
            continue
        command = command.replace("/etc/", f"{etc}/")
        if command.startswith("systemd-analyze"):
            # verify wants ExecStart to exist: point it at this checkout's fw-load
            unit = etc / "systemd/system/fw-load.service"
            unit.write_text(
                unit.read_text().replace("/usr/local/bin/fw-load", str(BIN / "fw-load"))
            )
        proc = subprocess.run(
            command, shell=True, cwd=work, env=env, capture_output=True, text=True, timeout=300
        )
        assert proc.returncode == 0 and not proc.stderr.strip(), (command, proc.stderr)
        ran += 1
    assert ran == len(commands) - 2
    built = list(yaml.safe_load_all((work / "fwc-prod.yaml").read_text()))
    assert {d["kind"] for d in built} >= {"DaemonSet", "ConfigMap", "PrometheusRule"}
    assert (etc / "fwc/artifact/fw.o.sha256").read_text().split()[1] == "fw.o"
