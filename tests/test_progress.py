"""Progress on long work: one stderr line after the delay on a terminal (a pty here), and
nothing at all through a pipe or under CI."""

from __future__ import annotations

import io
import os
import pty
import subprocess
import sys
import time
from pathlib import Path

import pytest

from fwc.compiler.check import CheckOptions, check_paths
from fwc.compiler.progress import Progress, wanted

FWC = str(Path(sys.executable).parent / "fwc")
POLICY = """\
name: progress
default_action: deny
rules:
  - {name: allow_https, priority: 10, action: allow, protocol: tcp, destination_ports: [443]}
"""


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_quiet_before_the_delay_then_one_line_then_wiped() -> None:
    clock, out = Clock(), io.StringIO()
    with Progress("fwc check", out, enabled=True, clock=clock, delay=2.0, timer=False) as p:
        p.stage("1/2 a.yaml: load")
        clock.now = 1.9
        p.stage("1/2 a.yaml: rego")
        assert out.getvalue() == ""
        clock.now = 2.5
        p.stage("2/2 b.yaml: schema")
        assert out.getvalue() == "\r\033[Kfwc check: 2/2 b.yaml: schema (2 s)"
    assert out.getvalue().endswith("\r\033[K")


def test_disabled_never_writes() -> None:
    clock, out = Clock(), io.StringIO()
    with Progress("fwc check", out, enabled=False, clock=clock, delay=0, timer=False) as p:
        clock.now = 10
        p.stage("rego")
    assert out.getvalue() == ""


def test_the_timer_draws_a_stage_that_runs_long() -> None:
    out = io.StringIO()
    with Progress("fwc compile", out, enabled=True, delay=0.05) as p:
        p.stage("build with clang")
        assert out.getvalue() == ""
        deadline = time.monotonic() + 2
        while "build with clang" not in out.getvalue() and time.monotonic() < deadline:
            time.sleep(0.05)
    assert "fwc compile: build with clang" in out.getvalue()


def test_wanted_only_on_a_terminal_outside_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    master, slave = pty.openpty()
    reader, writer = os.pipe()
    try:
        with os.fdopen(os.dup(slave), "w") as tty, os.fdopen(os.dup(writer), "w") as pipe:
            monkeypatch.delenv("CI", raising=False)
            assert wanted(tty) and not wanted(pipe)
            monkeypatch.setenv("CI", "true")
            assert not wanted(tty)
    finally:
        for fd in (master, slave, reader, writer):
            os.close(fd)


def run_compile(tmp_path: Path, stderr_tty: bool, **env: str) -> tuple[str, str]:
    """`fwc compile` with stderr on a pty or a pipe; (stdout, stderr)."""
    policy = tmp_path / "progress.yaml"
    policy.write_text(POLICY)
    cmd = [FWC, "compile", str(policy), "-o", str(tmp_path / "p.o"), "--no-cache"]
    return run(cmd, stderr_tty, **env)


def run(cmd: list[str], stderr_tty: bool, cwd: Path | None = None, **env: str) -> tuple[str, str]:
    full = {k: v for k, v in os.environ.items() if k != "CI"}
    full.update({"FWC_PROGRESS_DELAY": "0.1", **env})
    if not stderr_tty:
        proc = subprocess.run(cmd, capture_output=True, text=True, env=full, timeout=120, cwd=cwd)
        return proc.stdout, proc.stderr
    master, slave = pty.openpty()
    child = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=slave, env=full, cwd=cwd)
    os.close(slave)
    seen = b""
    while True:
        try:
            chunk = os.read(master, 4096)
        except OSError:  # EIO once the child closed its end
            break
        if not chunk:
            break
        seen += chunk
    os.close(master)
    stdout, _ = child.communicate(timeout=120)
    return stdout.decode(), seen.decode()


def test_compile_shows_stages_on_a_terminal(tmp_path: Path) -> None:
    stdout, stderr = run_compile(tmp_path, stderr_tty=True)
    assert stdout.startswith("wrote ")
    assert "fwc compile: build with clang" in stderr
    assert stderr.endswith("\r\033[K")


@pytest.mark.parametrize(("tty", "env"), [(False, {}), (True, {"CI": "true"})])
def test_compile_is_silent_through_a_pipe_or_under_ci(
    tmp_path: Path, tty: bool, env: dict[str, str]
) -> None:
    stdout, stderr = run_compile(tmp_path, stderr_tty=tty, **env)
    # the gate's warnings may be there; no progress line is
    assert stdout.startswith("wrote ")
    assert "\033[K" not in stderr and "fwc compile:" not in stderr


def test_check_shows_the_rego_stage_on_a_terminal(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text(POLICY)
    # a pty starts 0 columns wide: the line is cut at 79 characters, so keep the path short
    # the Rego stage of one small file can take less than any delay: show from the start
    stdout, stderr = run(
        [FWC, "check", "a.yaml"], stderr_tty=True, cwd=tmp_path, FWC_PROGRESS_DELAY="0"
    )
    assert "1 file checked" in stdout
    assert "fwc check: 1/1 a.yaml: rego" in stderr


def test_check_names_file_and_stage(tmp_path: Path) -> None:
    for name in ("a", "b"):
        (tmp_path / f"{name}.yaml").write_text(POLICY.replace("progress", name))
    seen: list[str] = []
    check_paths([tmp_path], CheckOptions(stage=seen.append))
    assert seen[0] == f"1/2 {tmp_path / 'a.yaml'}: load"
    assert seen[-1] == f"2/2 {tmp_path / 'b.yaml'}: semantics"
