"""The broken-policy corpus yields exactly its golden findings (FWC_UPDATE_GOLDEN=1 rewrites)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from fwc.compiler.check import ANALYSES, CheckOptions, check_file

HERE = Path(__file__).resolve().parent
BROKEN = HERE / "broken"
GOLDEN = HERE / "golden" / "findings"
UPDATE = os.environ.get("FWC_UPDATE_GOLDEN") == "1"

CASES = sorted(p.name for p in BROKEN.glob("*.yaml"))


def _observed(name: str) -> list[dict[str, Any]]:
    # Relative to tests/broken, so the golden files do not depend on the checkout path.
    cwd = Path.cwd()
    os.chdir(BROKEN)
    try:
        result = check_file(name, CheckOptions(analyses=ANALYSES))
    finally:
        os.chdir(cwd)
    return [
        {
            "id": f.id,
            "severity": f.severity.value,
            "line": f.location.line,
            "column": f.location.column,
            "rule": f.rule,
            "message": f.message,
        }
        for f in result.findings
    ]


@pytest.mark.parametrize("name", CASES)
def test_broken_policy_matches_golden(name: str) -> None:
    observed = _observed(name)
    golden = GOLDEN / (Path(name).stem + ".json")
    if UPDATE:
        golden.write_text(json.dumps(observed, indent=2) + "\n", encoding="utf-8")
    assert golden.exists(), f"no golden file {golden}; run with FWC_UPDATE_GOLDEN=1"
    assert observed == json.loads(golden.read_text(encoding="utf-8"))


@pytest.mark.parametrize("name", CASES)
def test_corpus_file_shows_the_id_in_its_name(name: str) -> None:
    wanted = name.split("_")[0].upper()
    assert wanted in {f["id"] for f in _observed(name)}


def test_corpus_covers_every_loader_schema_semantic_and_behaviour_id() -> None:
    covered = {f["id"] for name in CASES for f in _observed(name)}
    # FWC015 is the fallback for schema keywords the policy schema does not use.
    numbers = [*range(1, 9), *range(10, 15), *range(20, 37), 38, 39]
    expected = {f"FWC{n:03d}" for n in numbers}
    assert expected <= covered
