"""Two private namespaces joined by one veth for the benchmarks: `tx` sends, `rx` filters."""

from __future__ import annotations

import contextlib
import os
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass

RX_MAC = "02:00:00:00:00:02"  # the destination MAC that fwc.compiler.oracle.frames writes
TX_DEV, RX_DEV = "fwb-tx", "fwb-rx"


def sh(*args: str, input: str | None = None, check: bool = True) -> str:
    result = subprocess.run(args, input=input, text=True, capture_output=True, check=False)
    if check and result.returncode != 0:
        raise RuntimeError(
            f"{' '.join(args[:6])}: {result.stderr.strip() or result.stdout.strip()}"
        )
    return result.stdout


def run_in_netns(tag: str, links: tuple[str, str], argv: list[str], remove: list[str]) -> int:
    """Run `argv` in a fresh namespace `tag` that holds the veth pair `links` (both up), with
    /sys/fs/bpf still visible (nsenter, where `ip netns exec` remounts /sys); its exit code.
    The namespace and the paths `remove` (a pin root) are removed after, whatever happened."""
    try:
        sh("ip", "netns", "add", tag)
        sh("ip", "-n", tag, "link", "add", links[0], "type", "veth", "peer", links[1])
        for ifname in links:
            sh("ip", "-n", tag, "link", "set", ifname, "up")
        return subprocess.run(["nsenter", f"--net=/run/netns/{tag}", *argv]).returncode
    finally:
        subprocess.run(["ip", "netns", "del", tag], check=False)
        subprocess.run(["rm", "-rf", *remove], check=False)


@dataclass(frozen=True)
class Pair:
    """Two namespaces joined by one veth: `tx` sends, `rx` filters."""

    tx: str
    rx: str

    def rx_sh(self, *args: str, input: str | None = None, check: bool = True) -> str:
        return sh("ip", "netns", "exec", self.rx, *args, input=input, check=check)


@contextlib.contextmanager
def veth_pair() -> Iterator[Pair]:
    tag = f"{os.getpid()}-{time.monotonic_ns() % 100000}"
    pair = Pair(f"fwcbench-tx-{tag}", f"fwcbench-rx-{tag}")
    sh("ip", "netns", "add", pair.tx)
    try:
        sh("ip", "netns", "add", pair.rx)
        try:
            sh(
                "ip",
                "-n",
                pair.tx,
                "link",
                "add",
                TX_DEV,
                "type",
                "veth",
                "peer",
                "name",
                RX_DEV,
                "netns",
                pair.rx,
            )
            sh("ip", "-n", pair.rx, "link", "set", RX_DEV, "address", RX_MAC)
            # The sender's own stack stays quiet: no router solicitations or MLD reports.
            sh("ip", "netns", "exec", pair.tx, "sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1")
            for ns, dev in ((pair.tx, TX_DEV), (pair.rx, RX_DEV)):
                sh("ip", "-n", ns, "link", "set", dev, "up")
            # Passed packets end in a blackhole: no forwarding, no ICMP, nothing leaves.
            sh("ip", "-n", pair.rx, "route", "add", "blackhole", "default")
            sh("ip", "-n", pair.rx, "-6", "route", "add", "blackhole", "default")
            yield pair
        finally:
            sh("ip", "netns", "del", pair.rx, check=False)
    finally:
        sh("ip", "netns", "del", pair.tx, check=False)


def xdp_drops(pair: Pair) -> int:
    """Frames the receiver's XDP program dropped (the veth's per-queue counters)."""
    out = pair.rx_sh("ethtool", "-S", RX_DEV, check=False)
    return sum(
        int(line.split(":")[1])
        for line in out.splitlines()
        if line.strip().startswith("rx_queue_") and line.strip().split(":")[0].endswith("xdp_drops")
    )
