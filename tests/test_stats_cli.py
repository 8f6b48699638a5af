"""`fw-load stats`: counters read back from the pins alone, named by the pinned manifest."""

from __future__ import annotations

import itertools
import json
import os
from collections.abc import Iterator
from pathlib import Path

import loader_fixtures
import pytest

from fwc.loader.cli import main
from fwc.loader.kernel import libbpf
from fwc.loader.kernel.meta import create_meta_map
from fwc.loader.kernel.program import LoadedProgram
from fwc.loader.node import pins

pytestmark = pytest.mark.kernel

_counter = itertools.count()


@pytest.fixture
def pin_root() -> Iterator[Path]:
    root = Path("/sys/fs/bpf") / f"fwc-stats-test-{os.getpid()}-{next(_counter)}"
    try:
        yield root
    finally:
        pins.remove_tree(root)


def _apply(artifact: Path, root: Path, policy: str) -> LoadedProgram:
    """What apply leaves in bpffs, without attaching: prog, maps and the manifest map."""
    program = LoadedProgram.load(artifact)
    target = pins.policy_pins(root, policy)
    program.pin(target.dir)
    meta = create_meta_map(program.spec.manifest_bytes)
    try:
        libbpf.obj_pin(meta, target.meta)
    finally:
        os.close(meta)
    return program


def test_json_counters_by_slot_name(
    tmp_path: Path, pin_root: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with _apply(loader_fixtures.build(tmp_path), pin_root, "fixture") as program:
        for size in (60, 100, 1500):
            program.test_run(bytes(size), repeat=2)
    # the program is closed: the pins alone keep the counters alive
    assert main(["stats", "--pin-root", str(pin_root), "--json"]) == 0
    [policy] = json.loads(capsys.readouterr().out)["policies"]
    assert (policy["policy"], policy["source_sha256"], policy["dry_run"]) == (
        "fixture",
        "ab" * 32,
        False,
    )
    assert policy["sha256"] is None  # pinned by hand here, with no fw-load record
    assert policy["counters"] == [
        {"index": 0, "name": "rule:count_all", "action": "allow", "packets": 6, "bytes": 3320},
        {"index": 1, "name": "default", "packets": 0, "bytes": 0},
    ]


def test_text_output_and_policy_filter(
    tmp_path: Path, pin_root: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    artifact = loader_fixtures.build(tmp_path)
    with _apply(artifact, pin_root, "one") as first, _apply(artifact, pin_root, "two"):
        first.test_run(bytes(64), repeat=5)
    assert main(["stats", "--pin-root", str(pin_root)]) == 0
    out = capsys.readouterr().out
    assert out.index("policy one") < out.index("policy two")
    assert main(["stats", "--pin-root", str(pin_root), "--policy", "one"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == f"policy one  artifact sha256 -  source sha256 {'ab' * 32}"
    assert lines[1].split() == ["counter", "action", "packets", "bytes"]
    assert lines[2].split() == ["rule:count_all", "allow", "5", "320"]
    assert lines[3].split() == ["default", "0", "0"]


def test_nothing_applied(pin_root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["stats", "--pin-root", str(pin_root)]) == 0
    assert "no policy is applied" in capsys.readouterr().out
    assert main(["stats", "--pin-root", str(pin_root), "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == {"policies": []}


def test_unknown_policy_exits_2(pin_root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["stats", "--pin-root", str(pin_root), "--policy", "ghost"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("fw-load stats: policy 'ghost' is not applied")
    assert err.count("\n") == 1


def test_pin_root_off_bpffs_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["stats", "--pin-root", str(tmp_path)]) == 2
    assert "not on a BPF filesystem" in capsys.readouterr().err


def test_missing_manifest_map_exits_2(
    tmp_path: Path, pin_root: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with LoadedProgram.load(loader_fixtures.build(tmp_path)) as program:
        program.pin(pins.policy_pins(pin_root, "bare").dir)
    assert main(["stats", "--pin-root", str(pin_root)]) == 2
    assert "policy 'bare' has no manifest pin" in capsys.readouterr().err
