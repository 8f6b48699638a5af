"""The fleet rehearsal: three namespace nodes follow one artifact volume; a pinned rollout
converges everywhere and traffic proves it, a broken or unpinned one changes nothing."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parent.parent / "bench"
sys.path.insert(0, str(BENCH))

from fleet_rehearsal import NEW_PORT, OLD_PORT, PACKETS, rehearse  # noqa: E402

pytestmark = [pytest.mark.kernel, pytest.mark.netns]


def test_fleet_rehearsal(tmp_path: Path) -> None:
    result = rehearse(tmp_path, count=3)
    # the new rules deny NEW_PORT and no longer OLD_PORT, on every node
    assert result.traffic == [(PACKETS, 0)] * 3, (OLD_PORT, NEW_PORT)
    assert set(result.refusals) == {"invalid", "unpinned"}
    for reason, said in result.refusals.items():
        assert len(said) == 3 and all(f"rejected ({reason})" in s for s in said)
    assert result.unchanged
    # polled once a second: every node applies within a couple of polls
    assert 0 < result.converge_applied_s < 5
    assert result.converge_ready_s < 10
