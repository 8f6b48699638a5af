"""Two network namespaces sharing one pin root: neither apply, detach, status nor the daemon
of one ever touches the other's policy."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from tests.loader_netns import FWLOAD, Pair, compile_policy, sh, unique, veth_pair, wait_until

pytestmark = [pytest.mark.kernel, pytest.mark.netns]

POLICY = """
name: {name}
default_action: allow
rules:
  - {{name: deny_udp_9, priority: 10, action: deny, protocol: udp, destination_ports: [9]}}
"""


def fwload_in(pair: Pair, ns: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["nsenter", f"--net=/run/netns/{ns}", FWLOAD, *args],
        capture_output=True,
        text=True,
        env=pair.fwload_env(),
        timeout=60,
    )


def status_in(pair: Pair, ns: str) -> dict[str, Any]:
    done = fwload_in(pair, ns, "status", "--json")
    assert done.returncode == 0, done.stderr
    state: dict[str, Any] = json.loads(done.stdout)
    return state


def attached_in(pair: Pair, ns: str) -> dict[str, str]:
    state = status_in(pair, ns)
    return {i["name"]: p["name"] for p in state["policies"] for i in p["interfaces"]}


def xdp_prog_id(ns: str, ifname: str) -> int:
    """The XDP program id the kernel runs on `ifname`, 0 for none."""
    out = sh("ip", "-n", ns, "-d", "-j", "link", "show", ifname).stdout
    xdp = json.loads(out)[0].get("xdp", {})
    return int(xdp.get("prog", {}).get("id", 0))


def pinned_prog_id(pair: Pair, ns: str, policy: str) -> int:
    (found,) = [p for p in status_in(pair, ns)["policies"] if p["name"] == policy]
    return int(found["prog_id"])


def test_the_same_policy_name_in_another_namespace_is_refused(tmp_path: Path) -> None:
    name = unique("nsp")
    artifact = compile_policy(POLICY.format(name=name), tmp_path)
    with veth_pair(subnet=13) as pair:
        done = fwload_in(pair, pair.ns_a, "apply", str(artifact))
        assert done.returncode == 0, done.stderr
        a_prog = xdp_prog_id(pair.ns_a, pair.if_a)
        assert a_prog == pinned_prog_id(pair, pair.ns_a, name) != 0

        refused = fwload_in(pair, pair.ns_b, "apply", str(artifact))
        assert refused.returncode == 2
        assert "applied in another network namespace" in refused.stderr
        assert len(refused.stderr.strip().splitlines()) == 1
        assert xdp_prog_id(pair.ns_b, pair.if_b) == 0
        # A still runs the program its pins describe, and A's traffic is still filtered
        assert xdp_prog_id(pair.ns_a, pair.if_a) == a_prog == pinned_prog_id(pair, pair.ns_a, name)
        assert attached_in(pair, pair.ns_a) == {pair.if_a: name}

        # B sees A's policy as another namespace's, and neither detach nor status changes it
        state = status_in(pair, pair.ns_b)
        assert state["policies"] == []
        assert [o["name"] for o in state["other_namespaces"]] == [name]
        text = fwload_in(pair, pair.ns_b, "status").stdout
        assert f"policy {name}: applied in another network namespace" in text
        assert fwload_in(pair, pair.ns_b, "detach", "--all").stdout.strip() == "nothing attached"
        assert attached_in(pair, pair.ns_a) == {pair.if_a: name}


def test_detach_in_one_namespace_leaves_the_other(tmp_path: Path) -> None:
    name_a, name_b = unique("nsa"), unique("nsb")
    art_a = compile_policy(POLICY.format(name=name_a), tmp_path)
    art_b = compile_policy(POLICY.format(name=name_b), tmp_path)
    with veth_pair(subnet=13) as pair:
        assert fwload_in(pair, pair.ns_a, "apply", str(art_a)).returncode == 0
        done = fwload_in(pair, pair.ns_b, "apply", str(art_b))
        assert done.returncode == 0, done.stderr
        assert attached_in(pair, pair.ns_a) == {pair.if_a: name_a}
        assert attached_in(pair, pair.ns_b) == {pair.if_b: name_b}
        a_prog = xdp_prog_id(pair.ns_a, pair.if_a)

        detached = fwload_in(pair, pair.ns_b, "detach", pair.if_b)
        assert detached.returncode == 0, detached.stderr
        assert attached_in(pair, pair.ns_b) == {}
        assert not (pair.root / name_b).exists()
        # A's pins and link are whole: its link pin was never "stale" from B's side
        assert (pair.root / name_a / "links" / pair.if_a).exists()
        assert xdp_prog_id(pair.ns_a, pair.if_a) == a_prog
        assert attached_in(pair, pair.ns_a) == {pair.if_a: name_a}

        # a policy applied in B after that does not forget A's either
        assert fwload_in(pair, pair.ns_b, "apply", str(art_b)).returncode == 0
        assert fwload_in(pair, pair.ns_b, "detach", "--all").returncode == 0
        assert attached_in(pair, pair.ns_a) == {pair.if_a: name_a}


def test_a_policy_of_a_namespace_that_is_gone_can_be_taken_over(tmp_path: Path) -> None:
    name = unique("nsg")
    artifact = compile_policy(POLICY.format(name=name), tmp_path)
    with veth_pair(subnet=13) as pair:
        gone, veth, peer = unique("fwcg"), unique("vg"), unique("vh")
        sh("ip", "netns", "add", gone)
        try:
            sh("ip", "-n", gone, "link", "add", veth, "type", "veth", "peer", "name", peer)
            sh("ip", "-n", gone, "link", "set", veth, "up")
            done = fwload_in(pair, gone, "apply", str(artifact))
            assert done.returncode == 0, done.stderr
        finally:
            sh("ip", "netns", "del", gone, check=False)
        # the namespace's devices go with it: its link pins turn defunct
        assert wait_until(
            lambda: fwload_in(pair, pair.ns_a, "apply", str(artifact)).returncode == 0, 10
        )
        assert attached_in(pair, pair.ns_a) == {pair.if_a: name}
        assert status_in(pair, pair.ns_a)["other_namespaces"] == []


def _daemon(pair: Pair, ns: str, artifact: Path, log: Path) -> subprocess.Popen[bytes]:
    cmd = ["nsenter", f"--net=/run/netns/{ns}", FWLOAD, "run", str(artifact)]
    with log.open("wb") as out:
        return subprocess.Popen(
            [*cmd, "--metrics-addr", "off"],
            stderr=out,
            env=pair.fwload_env(),
        )


def test_daemons_in_two_namespaces_do_not_take_each_others_links(tmp_path: Path) -> None:
    name_a, name_b = unique("nda"), unique("ndb")
    art_a = compile_policy(POLICY.format(name=name_a), tmp_path)
    art_b = compile_policy(POLICY.format(name=name_b), tmp_path)
    log_a, log_b = tmp_path / "a.log", tmp_path / "b.log"
    with veth_pair(subnet=13) as pair:
        daemon_a = _daemon(pair, pair.ns_a, art_a, log_a)
        daemon_b = _daemon(pair, pair.ns_b, art_b, log_b)
        try:
            assert wait_until(lambda: "control socket" in log_a.read_text(), 30)
            assert wait_until(lambda: "control socket" in log_b.read_text(), 30)
            progs = (xdp_prog_id(pair.ns_a, pair.if_a), xdp_prog_id(pair.ns_b, pair.if_b))
            # a reconcile every 5 s: watch both namespaces over several
            deadline = time.monotonic() + 12
            while time.monotonic() < deadline:
                now = (xdp_prog_id(pair.ns_a, pair.if_a), xdp_prog_id(pair.ns_b, pair.if_b))
                assert now == progs and 0 not in now
                time.sleep(0.5)
            assert attached_in(pair, pair.ns_a) == {pair.if_a: name_a}
            assert attached_in(pair, pair.ns_b) == {pair.if_b: name_b}
            # a third daemon for A's policy name in B is refused before it attaches
            third = fwload_in(pair, pair.ns_b, "run", str(art_a), "--metrics-addr", "off")
            assert third.returncode == 2
            assert "another" in third.stderr
        finally:
            for proc in (daemon_a, daemon_b):
                proc.send_signal(signal.SIGTERM)
                proc.wait(timeout=30)
        for log in (log_a, log_b):
            text = log.read_text()
            assert not re.search(
                r": attached \(|detached|forgotten", text.split("control socket")[1]
            )
