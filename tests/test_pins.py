"""Pin layout, the staging commit and leftover cleanup, on a real bpffs."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from fwc.loader.errors import LoaderError
from fwc.loader.node import bpffs, pins
from tests.loader_netns import unique


def test_pin_root_precedence(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(pins.ROOT_ENV, raising=False)
    assert pins.pin_root() == pins.DEFAULT_ROOT
    monkeypatch.setenv(pins.ROOT_ENV, "/sys/fs/bpf/x")
    assert pins.pin_root() == Path("/sys/fs/bpf/x")
    assert pins.pin_root("/sys/fs/bpf/y") == Path("/sys/fs/bpf/y")


@pytest.mark.parametrize(
    ("ifname", "pin_name"), [("eth0", "eth0"), ("eth0.100", "eth0:100"), ("a.b.c", "a:b:c")]
)
def test_link_pin_names_avoid_dots(ifname: str, pin_name: str) -> None:
    layout = pins.policy_pins(Path("/sys/fs/bpf/fwc"), "edge")
    assert layout.link(ifname) == Path("/sys/fs/bpf/fwc/edge/links") / pin_name


def test_no_bpffs_says_how_to_mount(tmp_path: Path) -> None:
    with pytest.raises(LoaderError, match="mount -t bpf bpf /sys/fs/bpf"):
        bpffs.require_bpffs(tmp_path)


@pytest.fixture
def root() -> Iterator[Path]:
    path = Path("/sys/fs/bpf") / unique("fwcpins")
    path.mkdir()
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@pytest.mark.kernel
def test_commit_swaps_directories_and_cleans_leftovers(root: Path) -> None:
    bpffs.require_bpffs(root)
    final = pins.policy_pins(root, "edge")
    final.make_dirs()
    (final.links_dir / "eth:0").mkdir()  # stands in for a link pin
    staging = pins.staging_pins(root, "edge")
    staging.make_dirs()
    (staging.maps_dir / "fwc_counters").mkdir()
    assert [p.dir.name for p in pins.policies(root)] == ["edge"]  # staging is invisible
    assert final.linked_interfaces() == ["eth.0"]

    pins.commit(staging, final)
    assert sorted(p.name for p in root.iterdir()) == ["edge"]
    assert final.linked_interfaces() == []
    assert (final.maps_dir / "fwc_counters").is_dir()

    dead = root / "_staging-edge-999999999"
    dead.mkdir()
    busy = root / "_staging-edge-1"  # pid 1 is alive: another fw-load at work
    busy.mkdir()
    (left,) = pins.leftovers(root)
    assert (left.path, left.kind, left.policy, left.pid) == (dead, "staging", "edge", 999999999)
    assert busy.exists()
