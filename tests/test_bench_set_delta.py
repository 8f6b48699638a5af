"""The live set change benchmark runs end to end at a tiny size (bench/bench_set_delta.py)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parent.parent / "bench" / "bench_set_delta.py"

pytestmark = [pytest.mark.kernel, pytest.mark.netns]


def test_the_set_delta_bench_runs_at_a_tiny_size() -> None:
    done = subprocess.run(
        [sys.executable, str(BENCH), "--entries", "2000", "--delta", "100", "--rounds", "2"],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr + done.stdout
    out = done.stdout
    assert out.startswith("load average at start:") and "load average at end:" in out
    assert re.search(r"^round 2: \+50 -50: in-daemon to flip [0-9.]+", out, re.M), out
    assert re.search(r"in-daemon to flip +median +[0-9.]+ +range [0-9.]+ - [0-9.]+", out), out
