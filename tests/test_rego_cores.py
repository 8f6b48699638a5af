"""Spare cores for the Rego gate: CPU idle time since the import, else the load."""

from __future__ import annotations

from pathlib import Path

import pytest

from fwc.compiler.gate import cores as rego_cores

STAT = """cpu  900 0 100 5000 20 0 0 0 0 0
cpu0 400 0 50 2000 10 0 0 0 0 0
cpu1 300 0 30 2500 5 0 0 0 0 0
cpu2 200 0 20 500 5 0 0 0 0 0
intr 12345
"""


@pytest.fixture
def two_cores(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(rego_cores.os, "sched_getaffinity", lambda _: {0, 1})
    monkeypatch.setattr(rego_cores.os, "sysconf", lambda _: 100)


@pytest.mark.usefixtures("two_cores")
def test_snapshot_sums_idle_and_iowait_of_the_allowed_cores(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    (tmp_path / "stat").write_text(STAT)
    monkeypatch.setattr(rego_cores, "PROC_STAT", str(tmp_path / "stat"))
    monkeypatch.setattr(rego_cores.time, "monotonic", lambda: 42.0)
    # cpu0 2000+10 and cpu1 2500+5 ticks; cpu2 is not ours; 100 ticks a second.
    assert rego_cores.snapshot() == (42.0, 45.15)


def test_snapshot_without_proc_stat(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(rego_cores, "PROC_STAT", str(tmp_path / "missing"))
    assert rego_cores.snapshot() is None


@pytest.mark.parametrize(
    ("before", "now", "idle"),
    [
        ((10.0, 100.0), (11.5, 101.5), 1.0),  # the other core idle the whole time
        ((10.0, 100.0), (11.0, 100.3), 0.3),
        ((10.0, 100.0), (10.1, 100.1), None),  # too short to tell
        ((10.0, 100.0), (30.0, 120.0), None),  # too old to tell
        (None, (11.0, 101.0), None),
    ],
)
def test_idle_cores_over_the_window(
    monkeypatch: pytest.MonkeyPatch,
    before: rego_cores.Snapshot,
    now: rego_cores.Snapshot,
    idle: float | None,
) -> None:
    monkeypatch.setattr(rego_cores, "_since", before)
    monkeypatch.setattr(rego_cores, "snapshot", lambda: now)
    assert rego_cores.idle_cores() == (pytest.approx(idle) if idle is not None else None)
    assert rego_cores._since == now  # the next call measures from here


@pytest.mark.usefixtures("two_cores")
@pytest.mark.parametrize(
    ("idle", "others", "spare"),
    [
        (1.0, 9.0, 1),
        (0.8, 9.0, 1),
        (0.6, 0.0, 0),
        (2.7, 0.0, 1),
        (None, 0.0, 1),
        (None, 0.4, 1),
        (None, 1.0, 0),
    ],
)
def test_spare_cores(
    monkeypatch: pytest.MonkeyPatch, idle: float | None, others: float, spare: int
) -> None:
    monkeypatch.setattr(rego_cores, "idle_cores", lambda: idle)
    monkeypatch.setattr(rego_cores, "other_runnable", lambda: others)
    assert rego_cores.spare_cores() == spare


@pytest.mark.parametrize(
    ("loadavg", "average", "others"),
    [
        ("0.50 0.40 0.30 3/120 999\n", 0.5, 2),
        ("1.00 1.00 1.00 1/80 7\n", 0.2, 0.2),
        ("1.70 1.00 1.00 1/80 7\n", 1.7, 1.7),
    ],
)
def test_other_runnable_is_the_larger_of_average_and_running_now(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, loadavg: str, average: float, others: float
) -> None:
    (tmp_path / "loadavg").write_text(loadavg)
    monkeypatch.setattr(rego_cores, "LOADAVG", str(tmp_path / "loadavg"))
    monkeypatch.setattr(rego_cores.os, "getloadavg", lambda: (average, 1.0, 1.0))
    assert rego_cores.other_runnable() == others


def test_other_runnable_falls_back_to_the_load_average(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(rego_cores, "LOADAVG", str(tmp_path / "missing"))
    monkeypatch.setattr(rego_cores.os, "getloadavg", lambda: (1.5, 1.0, 1.0))
    assert rego_cores.other_runnable() == 1.5
