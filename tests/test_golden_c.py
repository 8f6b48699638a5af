"""Golden files of the generated C for the example policies, per strategy; FWC_UPDATE_GOLDEN=1
rewrites them."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from fwc.compiler.backend.plan import make_plan, plan_findings
from fwc.compiler.backend.render import render
from tests.compile_helpers import policy_file

ROOT = Path(__file__).resolve().parent.parent
GOLDEN = Path(__file__).resolve().parent / "golden" / "c"
EXAMPLES = sorted(p for p in (ROOT / "policies").glob("*.yaml") if not p.stem.endswith(".cases"))
CASES = [(p, dry) for p in EXAMPLES for dry in (False, True)]
# The tables strategy refuses rate_limit and log rules: its cases are the examples it compiles.
TABLES_CASES = [
    (p, dry)
    for p in EXAMPLES
    if not plan_findings(policy_file(str(p)), "tables")
    for dry in (False, True)
]


def check_golden(source: str, golden: Path) -> None:
    if os.environ.get("FWC_UPDATE_GOLDEN") == "1":
        golden.parent.mkdir(parents=True, exist_ok=True)
        golden.write_text(source)
    assert golden.is_file(), f"{golden} is missing; run with FWC_UPDATE_GOLDEN=1"
    assert source == golden.read_text(), f"{golden} differs; review, then FWC_UPDATE_GOLDEN=1"


@pytest.mark.parametrize(
    ("policy", "dry_run"), CASES, ids=[f"{p.stem}{'-dry' if d else ''}" for p, d in CASES]
)
def test_generated_c_matches_golden(policy: Path, dry_run: bool) -> None:
    source = render(make_plan(policy_file(str(policy)), "constants", dry_run))
    check_golden(source, GOLDEN / f"{policy.stem}{'.dry-run' if dry_run else ''}.c")


@pytest.mark.parametrize(
    ("policy", "dry_run"),
    TABLES_CASES,
    ids=[f"{p.stem}-tables{'-dry' if d else ''}" for p, d in TABLES_CASES],
)
def test_generated_tables_c_matches_golden(policy: Path, dry_run: bool) -> None:
    source = render(make_plan(policy_file(str(policy)), "tables", dry_run))
    check_golden(source, GOLDEN / f"{policy.stem}.tables{'.dry-run' if dry_run else ''}.c")
