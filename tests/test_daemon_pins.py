"""`fw-load run` when its pins are removed or its bpffs unmounted underneath it, and what it says
on SIGTERM."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.loader_netns import FWLOAD, Pair, sh, udp_delivered, veth_pair, wait_until
from tests.test_control import scrape
from tests.test_live_update import FIRST, compile_tables

pytestmark = [pytest.mark.kernel, pytest.mark.netns]

NOWHERE = """
name: nowhere
default_action: allow
interfaces:
  include: ["nomatch*"]
rules:
  - {name: deny_udp_9, priority: 10, action: deny, protocol: udp, destination_ports: [9]}
"""


def start(
    pair: Pair, artifact: Path, log: Path, root: Path | None = None, metrics: str = "off"
) -> subprocess.Popen[bytes]:
    env = pair.fwload_env()
    if root is not None:
        env["FWC_PIN_ROOT"] = str(root)
    with log.open("wb") as out:
        proc = subprocess.Popen(
            pair.nsenter_a(FWLOAD, "run", str(artifact), "--metrics-addr", metrics),
            stderr=out,
            env=env,
        )
    assert wait_until(lambda: "control socket" in log.read_text(), 30), log.read_text()
    return proc


def stop(proc: subprocess.Popen[bytes]) -> int:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    return proc.wait(timeout=30)


def xdp_prog_id(pair: Pair) -> int:
    out = json.loads(sh("ip", "-n", pair.ns_a, "-d", "-j", "link", "show", pair.if_a).stdout)
    return int(out[0].get("xdp", {}).get("prog", {}).get("id", 0))


def test_removed_pins_are_pinned_again_from_the_daemons_references(tmp_path: Path) -> None:
    artifact = compile_tables(FIRST, tmp_path)
    log = tmp_path / "daemon.log"
    metrics = f"127.0.0.1:{20000 + (os.getpid() + 11) % 20000}"
    with veth_pair(subnet=15) as pair:
        proc = start(pair, artifact, log, metrics=metrics)
        try:
            prog = xdp_prog_id(pair)
            assert prog and pair.attached() == {pair.if_a: "live"}
            # past one reconcile, so the daemon holds what it pinned
            time.sleep(1.0)
            shutil.rmtree(pair.root / "live")
            # the link lives on in the daemon's fd: still filtered meanwhile
            assert xdp_prog_id(pair) == prog
            assert wait_until(lambda: (pair.root / "live" / "links" / pair.if_a).exists(), 8)
            assert "pinned again from its own references" in log.read_text()
            state = pair.status()
            (policy,) = state["policies"]
            assert policy["prog_id"] == prog == xdp_prog_id(pair)
            assert [i["name"] for i in policy["interfaces"]] == [pair.if_a]
            assert udp_delivered(pair, 5355, 5) == 0
            assert udp_delivered(pair, 5354, 5) == 5
            # the repair is counted where an operator's alert can see it
            page = scrape(pair, metrics)
            restored = re.search(r'^fwc_repairs_total\{kind="restored"\} (\S+)$', page, re.M)
            assert restored and float(restored.group(1)) >= 1, page
            assert re.search(r'^fwc_reconciles_total\{result="ok"\} [1-9]', page, re.M), page

            # the link itself gone too (detached, pins and all): the program is pinned again
            # from the daemon's fd and attached by a new link
            time.sleep(1.0)
            assert pair.fwload("detach", "--all").returncode == 0
            assert wait_until(lambda: pair.attached() == {pair.if_a: "live"}, 8), log.read_text()
            assert xdp_prog_id(pair) == prog
            assert proc.poll() is None
        finally:
            code = stop(proc)
        assert code == 0
        assert "stays attached (fail-closed)" in log.read_text()
        # the pins hold the program after the daemon is gone
        assert xdp_prog_id(pair) == prog


def test_an_unmounted_bpffs_ends_the_daemon_loudly_and_is_never_recreated(
    tmp_path: Path,
) -> None:
    artifact = compile_tables(FIRST, tmp_path)
    log = tmp_path / "daemon.log"
    mount = tmp_path / "bpf"
    mount.mkdir()
    sh("mount", "-t", "bpf", "bpf", str(mount))
    root = mount / "pins"
    try:
        with veth_pair(subnet=15) as pair:
            proc = start(pair, artifact, log, root)
            try:
                assert xdp_prog_id(pair) != 0
                sh("umount", "-l", str(mount))
                start_wait = time.monotonic()
                code = proc.wait(timeout=10)
                assert time.monotonic() - start_wait < 6
            finally:
                stop(proc)
            assert code == 2
            text = log.read_text()
            assert "FATAL: the pin root" in text and "UNFILTERED" in text
            assert "fail-closed" not in text
            # nothing was recreated on the plain directory left behind
            assert not root.exists()
    finally:
        subprocess.run(["umount", str(mount)], capture_output=True, check=False)


def test_sigterm_says_fail_closed_only_when_attached(tmp_path: Path) -> None:
    artifact = compile_tables(NOWHERE, tmp_path)
    log = tmp_path / "daemon.log"
    with veth_pair(subnet=15) as pair:
        proc = start(pair, artifact, log)
        assert stop(proc) == 0
        text = log.read_text()
        assert "fail-closed" not in text
        assert "policy nowhere is attached to no interface: nothing filters" in text
