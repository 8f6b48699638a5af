"""Per-rule interfaces on the wire: one policy on two veth pairs, each rule only on its own
interfaces; `fw-load run` gives a renamed and a new interface the right class."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.loader_netns import (
    FWLOAD,
    UDP_RECEIVER,
    UDP_SENDER,
    background,
    compile_policy,
    sh,
    unique,
    wait_until,
)

pytestmark = [pytest.mark.kernel, pytest.mark.netns]

POLICY = """
name: perif
default_action: deny
interfaces:
  include: ["fa*", "fb*"]
rules:
  - {name: udp_a, priority: 10, action: allow, protocol: udp, destination_ports: [7001],
     interfaces: ["fa*"]}
  - {name: udp_b, priority: 20, action: allow, protocol: udp, destination_ports: [7002],
     interfaces: ["fb*"]}
  - {name: udp_not_a, priority: 30, action: allow, protocol: udp, destination_ports: [7003],
     interfaces: ["!fa*"]}
  - {name: udp_any, priority: 40, action: allow, protocol: udp, destination_ports: [7004]}
"""
PORTS = (7001, 7002, 7003, 7004)
# port -> whether it passes on an fa* and on an fb* interface
PASSES = {"fa": {7001, 7004}, "fb": {7002, 7003, 7004}}


@dataclass(frozen=True)
class Link:
    """One veth pair from namespace a (`name`, `ip_a`) to namespace b (`ip_b`)."""

    name: str
    ip_a: str
    ip_b: str


@dataclass(frozen=True)
class Stand:
    ns_a: str
    ns_b: str
    root: Path
    tag: str

    def exec_a(self, *cmd: str) -> list[str]:
        return ["ip", "netns", "exec", self.ns_a, *cmd]

    def exec_b(self, *cmd: str) -> list[str]:
        return ["ip", "netns", "exec", self.ns_b, *cmd]

    def fwload(self, *args: str) -> list[str]:
        return ["nsenter", f"--net=/run/netns/{self.ns_a}", FWLOAD, *args]

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k != "SSH_CONNECTION"}
        env["FWC_PIN_ROOT"] = str(self.root)
        return env

    def link(self, prefix: str, subnet: int) -> Link:
        """A veth pair named `prefix`+tag in a (its peer in b), both up, on 10.21<subnet>.x.0/24."""
        name, peer = f"{prefix}{self.tag}"[:15], f"p{prefix}{self.tag}"[:15]
        octet = int(self.tag) % 250
        ip_a, ip_b = f"10.{210 + subnet}.{octet}.1", f"10.{210 + subnet}.{octet}.2"
        sh("ip", "-n", self.ns_a, "link", "add", name, "type", "veth", "peer", "name", peer)
        sh("ip", "-n", self.ns_a, "link", "set", peer, "netns", self.ns_b)
        for ns, ifname, addr in ((self.ns_a, name, ip_a), (self.ns_b, peer, ip_b)):
            sh("ip", "-n", ns, "addr", "add", f"{addr}/24", "dev", ifname)
            sh("ip", "-n", ns, "link", "set", ifname, "up")
        return Link(name, ip_a, ip_b)

    def delivered(self, link: Link, port: int) -> bool:
        """Whether UDP datagrams from b reach a:port over `link`."""
        receiver = self.exec_a(sys.executable, "-c", UDP_RECEIVER, str(port), "0.5")
        with background(receiver) as proc:
            sender = self.exec_b(sys.executable, "-c", UDP_SENDER, link.ip_a, str(port), "3", "0")
            sh(*sender)
            out, _ = proc.communicate(timeout=30)
        return int(out.strip().splitlines()[-1]) > 0

    def passing(self, link: Link) -> set[int]:
        return {port for port in PORTS if self.delivered(link, port)}


@contextmanager
def stand() -> Iterator[Stand]:
    tag = unique("")
    s = Stand(f"fwcia{tag}", f"fwcib{tag}", Path("/sys/fs/bpf") / f"fwcti{tag}", tag)
    try:
        sh("ip", "netns", "add", s.ns_a)
        sh("ip", "netns", "add", s.ns_b)
        for ns in (s.ns_a, s.ns_b):
            sh("ip", "-n", ns, "link", "set", "lo", "up")
        yield s
    finally:
        sh("ip", "netns", "del", s.ns_a, check=False)
        sh("ip", "netns", "del", s.ns_b, check=False)
        sh("rm", "-rf", str(s.root), check=False)


@pytest.mark.parametrize("strategy", ["constants", "tables"])
def test_each_rule_applies_on_its_own_interfaces(tmp_path: Path, strategy: str) -> None:
    artifact = compile_policy(POLICY, tmp_path, strategy=strategy)
    with stand() as s:
        fa, fb = s.link("fa", 1), s.link("fb", 2)
        done = subprocess.run(
            s.fwload("apply", str(artifact)), capture_output=True, text=True, env=s.env()
        )
        assert done.returncode == 0, done.stderr
        assert s.passing(fa) == PASSES["fa"]
        assert s.passing(fb) == PASSES["fb"]


def test_daemon_gives_renamed_and_new_interfaces_their_class(tmp_path: Path) -> None:
    artifact = compile_policy(POLICY, tmp_path)
    with stand() as s:
        fa, fb = s.link("fa", 1), s.link("fb", 2)
        daemon = subprocess.Popen(
            s.fwload("run", str(artifact)),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=s.env(),
        )
        try:
            assert wait_until(lambda: s.delivered(fb, 7002), 20)
            assert s.passing(fa) == PASSES["fa"]
            # fb's interface renamed into the fa* glob: the fa rules now apply there
            renamed = f"fa{s.tag}x"[:15]
            sh("ip", "-n", s.ns_a, "link", "set", fb.name, "name", renamed)
            assert wait_until(lambda: s.delivered(fb, 7001), 20)
            assert s.passing(fb) == PASSES["fa"]
            # a new interface in the fb* glob gets the fb rules
            fc = s.link("fbn", 3)
            assert wait_until(lambda: s.delivered(fc, 7002), 20)
            assert s.passing(fc) == PASSES["fb"]
        finally:
            daemon.terminate()
            daemon.communicate(timeout=30)


def _apply(s: Stand, artifact: Path) -> dict[str, Any]:
    done = subprocess.run(
        s.fwload("apply", "--json", str(artifact)), capture_output=True, text=True, env=s.env()
    )
    assert done.returncode == 0, done.stderr
    report: dict[str, Any] = json.loads(done.stdout)
    return report


def test_live_update_keeps_classes_and_a_pattern_change_swaps(tmp_path: Path) -> None:
    first = compile_policy(POLICY, tmp_path, strategy="tables")
    # same patterns, the fa* rule moves to port 7005: a live update keeps fwc_ifaces
    second = compile_policy(POLICY.replace("[7001]", "[7005]"), tmp_path, strategy="tables")
    # a new pattern: new classes, so a new program with its own fwc_ifaces
    third = compile_policy(
        POLICY.replace('["!fa*"]', '["!fa*", "!fbz*"]'), tmp_path, strategy="tables"
    )
    with stand() as s:
        fa, fb = s.link("fa", 1), s.link("fb", 2)
        assert _apply(s, first)["update"]["path"] == "program-swap"
        assert s.passing(fa) == PASSES["fa"]
        report = _apply(s, second)
        assert report["update"]["path"] == "live-update", report
        assert s.passing(fa) == {7004}
        assert s.delivered(fa, 7005)
        assert s.passing(fb) == PASSES["fb"]
        report = _apply(s, third)
        assert report["update"]["path"] == "program-swap"
        assert "interface patterns differ" in report["update"]["reason"]
        assert s.passing(fa) == PASSES["fa"]
        assert s.passing(fb) == PASSES["fb"]


SSH_ON = """
name: perif
default_action: deny
interfaces:
  include: ["fa*", "fb*"]
rules:
  - {name: ssh, priority: 10, action: allow, protocol: tcp, destination_ports: [22],
     interfaces: ["fa*"]}
"""


def test_lockout_check_runs_each_session_on_its_interface(tmp_path: Path) -> None:
    """A session to the address of fa passes (ssh is allowed on fa*); one to fb's address
    arrives on fb, where the policy drops it: the apply is refused."""
    artifact = compile_policy(SSH_ON, tmp_path)
    with stand() as s:
        fa, fb = s.link("fa", 1), s.link("fb", 2)

        def apply(server: str) -> subprocess.CompletedProcess[str]:
            env = {**s.env(), "SSH_CONNECTION": f"{fa.ip_b} 40000 {server} 22"}
            return subprocess.run(
                s.fwload("apply", str(artifact)), capture_output=True, text=True, env=env
            )

        refused = apply(fb.ip_a)
        assert refused.returncode == 1, refused.stderr
        assert "refusing to attach" in refused.stderr
        done = apply(fa.ip_a)
        assert done.returncode == 0, done.stderr
