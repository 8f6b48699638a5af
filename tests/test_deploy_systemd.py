"""deploy/systemd: the units pass `systemd-analyze verify` without a warning, run the CLI
contract, and grant the capabilities the DaemonSet grants."""

from __future__ import annotations

import configparser
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
UNITS = REPO / "deploy/systemd"
FWLOAD = str(Path(sys.executable).parent / "fw-load")


def unit(name: str) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read_string((UNITS / name).read_text())
    return parser


def verify(folder: Path, *names: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["systemd-analyze", "verify", *(str(folder / n) for n in names)],
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.fixture
def installed(tmp_path: Path) -> Path:
    """The units with ExecStart pointing at this checkout's fw-load (verify wants it to exist)."""
    for path in UNITS.iterdir():
        text = path.read_text().replace("/usr/local/bin/fw-load", FWLOAD)
        (tmp_path / path.name).write_text(text)
    return tmp_path


def test_units_verify_cleanly(installed: Path) -> None:
    proc = verify(installed, "fw-load.service", "fw-load.path")
    assert proc.returncode == 0 and proc.stderr == "" and proc.stdout == "", proc.stderr


def test_verify_catches_a_mistake(installed: Path) -> None:
    path = installed / "fw-load.service"
    path.write_text(path.read_text().replace("ProtectHome=yes", "ProtectHome=perhaps"))
    assert "perhaps" in verify(installed, "fw-load.service").stderr


def test_service_runs_the_watch_contract_and_restarts() -> None:
    service = unit("fw-load.service")["Service"]
    assert service["ExecStart"].split() == [
        "/usr/local/bin/fw-load",
        "run",
        "--watch",
        "/etc/fwc/artifact/fw.o",
        "--metrics-addr",
        "127.0.0.1:9469",
    ]
    assert service["Restart"] == "on-failure"
    assert service["NoNewPrivileges"] == "yes" and service["ProtectSystem"] == "strict"
    assert service["ReadWritePaths"].split() == ["/sys/fs/bpf", "/run/fwc"]


def test_path_unit_follows_the_pinned_digest() -> None:
    path = unit("fw-load.path")["Path"]
    assert path["Unit"] == "fw-load.service"
    assert path["PathChanged"] == "/etc/fwc/artifact/fw.o.sha256"
