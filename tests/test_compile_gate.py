"""`fwc compile` runs the gate of `fwc check` and never replaces what is not a regular file."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest

from fwc.compiler.cli import main

ROOT = Path(__file__).resolve().parent.parent
EDGE = ROOT / "policies" / "edge-web.yaml"

# schema-clean, but the bundled invariant deny_admin_from_world refuses it
SSH_FROM_WORLD = """\
name: ssh-world
default_action: deny
rules:
  - name: ssh_anywhere
    priority: 10
    action: allow
    protocol: tcp
    destination_ports: [22]
"""


def test_gate_refuses_what_check_refuses(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    policy = tmp_path / "ssh-world.yaml"
    policy.write_text(SSH_FROM_WORLD)
    out = tmp_path / "fw.o"
    assert main(["check", str(policy)]) == 1
    checked = capsys.readouterr().out
    assert main(["compile", str(policy), "-o", str(out)]) == 1
    compiled = capsys.readouterr().out
    assert "ssh_anywhere" in compiled and compiled == checked
    assert not out.exists()


def test_no_gate_says_so(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    policy = tmp_path / "ssh-world.yaml"
    policy.write_text(SSH_FROM_WORLD)
    out = tmp_path / "fw.o"
    assert main(["compile", str(policy), "-o", str(out), "--no-gate"]) == 0
    assert "--no-gate" in capsys.readouterr().err
    assert out.is_file()


def test_no_gate_still_stops_schema_errors(tmp_path: Path) -> None:
    policy = tmp_path / "bad.yaml"
    policy.write_text("name: bad\nrules: 3\n")
    assert main(["compile", str(policy), "-o", str(tmp_path / "fw.o"), "--no-gate"]) == 1
    assert not (tmp_path / "fw.o").exists()


def _fifo(path: Path) -> None:
    os.mkfifo(path)


def _socket(path: Path) -> None:
    server = socket.socket(socket.AF_UNIX)
    server.bind(str(path))
    server.close()


def _symlink(path: Path) -> None:
    target = path.parent / "target"
    target.write_bytes(b"keep")
    path.symlink_to(target)


@pytest.mark.parametrize(
    ("make", "kind"),
    [
        (Path.mkdir, "a directory"),
        (_fifo, "a FIFO"),
        (_socket, "a socket"),
        (_symlink, "a symlink"),
    ],
    ids=["directory", "fifo", "socket", "symlink"],
)
def test_output_that_is_no_regular_file_is_kept(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], make: object, kind: str
) -> None:
    out = tmp_path / "out.o"
    make(out)  # type: ignore[operator]
    before = os.lstat(out)
    assert main(["compile", str(EDGE), "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert f"is {kind}, not a regular file; refusing to replace it" in err
    assert err.count("\n") == 1
    after = os.lstat(out)
    assert (after.st_ino, after.st_mode) == (before.st_ino, before.st_mode)
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []


def test_dev_null_survives(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    before = os.stat("/dev/null")
    assert main(["compile", str(EDGE), "-o", "/dev/null"]) == 2
    assert "/dev/null is a character device" in capsys.readouterr().err
    after = os.stat("/dev/null")
    assert (after.st_ino, after.st_rdev) == (before.st_ino, before.st_rdev)


def test_regular_file_is_replaced(tmp_path: Path) -> None:
    out = tmp_path / "fw.o"
    out.write_bytes(b"old")
    assert main(["compile", str(EDGE), "-o", str(out)]) == 0
    assert out.read_bytes().startswith(b"\x7fELF")
    assert [p.name for p in tmp_path.iterdir()] == ["fw.o"]


def test_check_dir_takes_any_case(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for name in ("a.YAML", "b.Yml", "c.yaml", "d.CASES.YAML", "e.txt"):
        (tmp_path / name).write_text(SSH_FROM_WORLD.replace("ssh-world", name[0]))
    assert main(["check", "--no-rego", "--format", "json", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert all(f"{n}" in out for n in ("a.YAML", "b.Yml", "c.yaml"))
    assert "d.CASES.YAML" not in out and "e.txt" not in out
