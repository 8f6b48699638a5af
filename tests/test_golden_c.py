"""Golden files of the generated C for the example policies; FWC_UPDATE_GOLDEN=1 rewrites them."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from fwc.compiler.backend.plan import make_plan
from fwc.compiler.backend.render import render
from tests.compile_helpers import policy_file

ROOT = Path(__file__).resolve().parent.parent
GOLDEN = Path(__file__).resolve().parent / "golden" / "c"
EXAMPLES = sorted(p for p in (ROOT / "policies").glob("*.yaml") if not p.stem.endswith(".cases"))
CASES = [(p, dry) for p in EXAMPLES for dry in (False, True)]


@pytest.mark.parametrize(
    ("policy", "dry_run"), CASES, ids=[f"{p.stem}{'-dry' if d else ''}" for p, d in CASES]
)
def test_generated_c_matches_golden(policy: Path, dry_run: bool) -> None:
    source = render(make_plan(policy_file(str(policy)), "constants", dry_run))
    golden = GOLDEN / f"{policy.stem}{'.dry-run' if dry_run else ''}.c"
    if os.environ.get("FWC_UPDATE_GOLDEN") == "1":
        golden.parent.mkdir(parents=True, exist_ok=True)
        golden.write_text(source)
    assert golden.is_file(), f"{golden} is missing; run with FWC_UPDATE_GOLDEN=1"
    assert source == golden.read_text(), f"{golden} differs; review, then FWC_UPDATE_GOLDEN=1"
