"""`fw-load run` follows interfaces: create, rename (in and out of the globs), flap, delete."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.loader_netns import FWLOAD, compile_policy, sh, unique, veth_pair, wait_until

pytestmark = [pytest.mark.kernel, pytest.mark.netns]

POLICY = """
name: hotplug
default_action: allow
interfaces:
  exclude: ["skip*"]
rules:
  - {name: deny_udp_9, priority: 10, action: deny, protocol: udp, destination_ports: [9]}
"""


FETCH = "import sys, urllib.request; print(urllib.request.urlopen(sys.argv[1]).read().decode())"


def test_daemon_follows_link_events(tmp_path: Path) -> None:
    artifact = compile_policy(POLICY, tmp_path)
    with veth_pair(subnet=5) as pair:
        port = 20000 + os.getpid() % 20000
        env = pair.fwload_env()
        cmd = pair.nsenter_a(FWLOAD, "run", str(artifact))
        daemon = subprocess.Popen(
            [*cmd, "--metrics-addr", f"127.0.0.1:{port}"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        a, b = unique("hp"), unique("hp")
        ip = ["ip", "-n", pair.ns_a, "link"]
        try:
            assert wait_until(lambda: pair.attached() == {pair.if_a: "hotplug"}, 20)

            sh(*ip, "add", "name", a, "type", "veth", "peer", "name", b)  # created down
            assert wait_until(lambda: set(pair.attached()) == {pair.if_a, a, b})

            renamed = unique("hr")
            sh(*ip, "set", a, "name", renamed)
            assert wait_until(lambda: set(pair.attached()) == {pair.if_a, renamed, b})
            assert wait_until(pair.root.joinpath("hotplug", "links", renamed).exists)

            excluded = unique("skip")
            sh(*ip, "set", renamed, "name", excluded)
            assert wait_until(lambda: set(pair.attached()) == {pair.if_a, b})
            assert "xdp" not in sh(*ip, "show", excluded).stdout

            for state in ("up", "down", "up", "down", "up"):
                sh(*ip, "set", b, state)
            sh(*ip, "set", excluded, "up")
            assert wait_until(lambda: set(pair.attached()) == {pair.if_a, b})
            (policy,) = pair.status()["policies"]
            assert policy["stale_links"] == []
            assert len(policy["interfaces"]) == 2

            # the metrics server listens on the loopback of namespace a
            url = f"http://127.0.0.1:{port}/"
            metrics = sh(*pair.exec_a(sys.executable, "-c", FETCH, url)).stdout
            assert (
                'fwc_rule_packets_total{action="deny",policy="hotplug",rule="deny_udp_9"}'
                in metrics
            )
            assert f'interface="{b}",mode="native"' in metrics
            assert "fwc_policy_info{" in metrics

            sh(*ip, "del", b)  # takes its peer with it
            assert wait_until(lambda: pair.attached() == {pair.if_a: "hotplug"})
            assert pair.status()["policies"][0]["stale_links"] == []
        finally:
            daemon.send_signal(signal.SIGTERM)
            _, err = daemon.communicate(timeout=20)
        assert daemon.returncode == 0, err
        assert "fail-closed" in err
        # SIGTERM left the program attached
        assert pair.attached() == {pair.if_a: "hotplug"}

        # The policy's pins are still there from the first daemon, so readiness is the
        # new daemon's own start line, not what status shows.
        log = tmp_path / "detaching.log"
        with log.open("w") as stderr:
            detaching = subprocess.Popen(
                [*cmd, "--metrics-addr", "off", "--detach-on-exit"],
                stderr=stderr,
                text=True,
                env=env,
            )
        assert wait_until(lambda: "policy hotplug (" in log.read_text(), 30)
        detaching.send_signal(signal.SIGINT)
        assert detaching.wait(timeout=20) == 0
        assert pair.attached() == {}
