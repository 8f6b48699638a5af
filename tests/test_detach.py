"""`fw-load detach`: one interface, then all, removing pins; clear errors otherwise."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.loader_netns import compile_policy, sh, unique, veth_pair

pytestmark = [pytest.mark.kernel, pytest.mark.netns]

POLICY = """
name: detach-me
default_action: allow
rules:
  - {name: deny_udp_9, priority: 10, action: deny, protocol: udp, destination_ports: [9]}
"""


def test_detach_one_then_all(tmp_path: Path) -> None:
    artifact = compile_policy(POLICY, tmp_path)
    with veth_pair(subnet=6) as pair:
        extra = unique("dx")
        sh("ip", "-n", pair.ns_a, "link", "add", "name", extra, "type", "veth", "peer",
           "name", extra + "p")  # fmt: skip
        for name in (extra, extra + "p"):
            sh("ip", "-n", pair.ns_a, "link", "set", name, "up")
        assert pair.fwload("apply", str(artifact)).returncode == 0
        assert set(pair.attached()) == {pair.if_a, extra, extra + "p"}

        usage = pair.fwload("detach")
        assert usage.returncode == 2 and "--all" in usage.stderr
        unknown = pair.fwload("detach", "nosuchif0")
        assert unknown.returncode == 2 and "nosuchif0" in unknown.stderr
        other = pair.fwload("detach", extra, "--policy", "another")
        assert other.returncode == 2
        assert extra in pair.attached()

        one = pair.fwload("detach", extra)
        assert one.returncode == 0 and f"{extra}: detached policy detach-me" in one.stdout
        assert set(pair.attached()) == {pair.if_a, extra + "p"}
        assert not (pair.root / "detach-me" / "links" / extra).exists()
        assert "xdp" not in sh("ip", "-n", pair.ns_a, "link", "show", extra).stdout

        everything = pair.fwload("detach", "--all")
        assert everything.returncode == 0, everything.stderr
        assert pair.status()["policies"] == []
        assert list(pair.root.iterdir()) == []
        assert "xdp" not in sh("ip", "-n", pair.ns_a, "link", "show").stdout
        assert "nothing attached" in pair.fwload("detach", "--all").stdout


def test_detach_without_any_pins_creates_nothing() -> None:
    with veth_pair(subnet=7) as pair:
        assert not pair.root.exists()
        unknown = pair.fwload("detach", "nosuchif0")
        assert unknown.returncode == 2 and "nosuchif0" in unknown.stderr
        assert "nothing attached" in pair.fwload("detach", "--all").stdout
        assert not pair.root.exists()
