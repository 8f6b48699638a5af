"""`fwc diff` of tests/diff/old.yaml and new.yaml in every format matches its golden file
(FWC_UPDATE_GOLDEN=1 rewrites them): a port opened, a rate changed, a log dropped, a rule
renamed."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from fwc.compiler.reports.sarif import repository_root

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
GOLDEN = HERE / "golden" / "diff"
UPDATE = os.environ.get("FWC_UPDATE_GOLDEN") == "1"
SUFFIX = {"text": "txt", "json": "json", "markdown": "md", "sarif": "sarif"}


def _diff(fmt: str) -> tuple[int, str]:
    # from the checkout's root with relative paths, so no output names the checkout's path
    pair = ["tests/diff/old.yaml", "tests/diff/new.yaml"]
    proc = subprocess.run(
        [sys.executable, "-m", "fwc.compiler.cli", "diff", *pair, "--format", fmt],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
        check=False,
    )
    assert proc.stderr == ""
    # SARIF says where the repository is; the golden file says ROOT instead
    base = repository_root(ROOT).as_uri().rstrip("/") + "/"
    return proc.returncode, proc.stdout.replace(base, "file:///ROOT/")


@pytest.mark.parametrize("fmt", sorted(SUFFIX))
def test_diff_output_matches_golden(fmt: str) -> None:
    code, out = _diff(fmt)
    assert code == 1  # verdicts change
    golden = GOLDEN / f"edit.{SUFFIX[fmt]}"
    if UPDATE:
        golden.write_text(out, encoding="utf-8")
    assert golden.exists(), f"no golden file {golden}; run with FWC_UPDATE_GOLDEN=1"
    assert out == golden.read_text(encoding="utf-8")
