"""The artifact loads with the standard tools: `ip link ... xdp obj` and `bpftool prog load`."""

from __future__ import annotations

import itertools
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from fwc.compiler.backend.build import compile_policy
from tests.compile_helpers import policy_file

pytestmark = [pytest.mark.kernel, pytest.mark.netns]

ROOT = Path(__file__).resolve().parent.parent
_counter = itertools.count()

# fwc names the program after the policy (edge-web), as the kernel and `ip link` show it.
PROGRAM = "fwc_edge_web"


def unique(prefix: str) -> str:
    return f"{prefix}{os.getpid() % 100000}x{next(_counter)}"


def run(*cmd: str) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, f"{' '.join(cmd)}: {done.stderr.strip()}"
    return done


@pytest.fixture(scope="module")
def artifact(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("tools") / "fw.o"
    return compile_policy(policy_file(str(ROOT / "policies" / "edge-web.yaml")), output=out).path


@pytest.fixture
def netns_veth() -> Iterator[tuple[str, str]]:
    ns, dev, peer = unique("fwcat"), unique("fwca"), unique("fwcb")
    run("ip", "netns", "add", ns)
    try:
        run("ip", "-n", ns, "link", "add", dev, "type", "veth", "peer", "name", peer)
        run("ip", "-n", ns, "link", "set", dev, "up")
        run("ip", "-n", ns, "link", "set", peer, "up")
        yield ns, dev
    finally:
        subprocess.run(["ip", "netns", "del", ns], capture_output=True, check=False)


def test_ip_link_attaches_the_artifact(artifact: Path, netns_veth: tuple[str, str]) -> None:
    ns, dev = netns_veth
    done = subprocess.run(
        [
            "ip",
            "-n",
            ns,
            "link",
            "set",
            "dev",
            dev,
            "xdpgeneric",
            "obj",
            str(artifact),
            "sec",
            "xdp",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "warning" not in done.stderr.lower(), done.stderr
    shown = run("ip", "-n", ns, "-d", "link", "show", "dev", dev).stdout
    assert "xdp" in shown and PROGRAM in shown
    run("ip", "-n", ns, "link", "set", "dev", dev, "xdpdrv", "off")


def test_bpftool_loads_the_artifact(artifact: Path) -> None:
    pin = Path("/sys/fs/bpf") / unique("fwc_tools_")
    try:
        run("bpftool", "prog", "load", str(artifact), str(pin))
        shown = run("bpftool", "prog", "show", "pinned", str(pin)).stdout
        assert "xdp" in shown and PROGRAM in shown and "gpl" in shown
    finally:
        pin.unlink(missing_ok=True)
