"""Atomic swaps under traffic: 20 policy swaps lose no allowed packet and leak no denied one."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.loader_netns import (
    UDP_RECEIVER,
    UDP_SENDER,
    background,
    compile_policy,
    veth_pair,
)

pytestmark = [pytest.mark.kernel, pytest.mark.netns]

# same policy name, different programs: every apply is a link_update of the same links
FIRST = """
name: swap
default_action: allow
rules:
  - {name: allow_flow, priority: 10, action: allow, protocol: udp, destination_ports: [5353]}
  - {name: deny_flow, priority: 20, action: deny, protocol: udp, destination_ports: [5354]}
"""

SECOND = """
name: swap
default_action: deny
rules:
  - {name: deny_flow_first, priority: 5, action: deny, protocol: udp, destination_ports: [5354]}
  - {name: allow_flow, priority: 10, action: allow, protocol: udp, destination_ports: [5353]}
  - {name: allow_icmp, priority: 20, action: allow, protocol: icmp}
"""

SWAPS = 20
PACKETS = 3000

# applies artifacts alternately in one process (the CLI's start-up would dominate the run)
SWAPPER = """
import sys
from pathlib import Path
from fwc.loader.apply.transaction import ApplyOptions, apply
root, swaps, artifacts = Path(sys.argv[1]), int(sys.argv[2]), sys.argv[3:]
for i in range(swaps):
    report = apply(ApplyOptions(artifact=Path(artifacts[i % len(artifacts)]), root=root))
    assert [r.action for r in report.interfaces] == ["replaced"], report
print("swapped", swaps)
"""


def test_swaps_under_traffic_lose_and_leak_nothing(tmp_path: Path) -> None:
    first, second = compile_policy(FIRST, tmp_path), compile_policy(SECOND, tmp_path)
    with veth_pair(subnet=4) as pair:
        assert pair.fwload("apply", str(first)).returncode == 0
        with (
            background(pair.exec_a(sys.executable, "-c", UDP_RECEIVER, "5353", "2")) as allowed,
            background(pair.exec_a(sys.executable, "-c", UDP_RECEIVER, "5354", "2")) as denied,
        ):
            senders = [
                subprocess.Popen(
                    pair.exec_b(
                        sys.executable,
                        "-c",
                        UDP_SENDER,
                        pair.ip_a,
                        str(port),
                        str(PACKETS),
                        "0.001",
                    )
                )
                for port in (5353, 5354)
            ]
            swapper = subprocess.run(
                pair.nsenter_a(
                    sys.executable,
                    "-c",
                    SWAPPER,
                    str(pair.root),
                    str(SWAPS),
                    str(second),
                    str(first),
                ),
                capture_output=True,
                text=True,
                timeout=120,
            )
            for sender in senders:
                assert sender.wait(timeout=60) == 0
            got_allowed = int(allowed.communicate(timeout=30)[0].split()[-1])
            got_denied = int(denied.communicate(timeout=30)[0].split()[-1])
        assert swapper.returncode == 0, swapper.stderr
        assert got_allowed == PACKETS
        assert got_denied == 0
        # the counter of the rule both policies keep carried over every swap (up to a count
        # per swap lost to the read-modify-write race documented in docs/loader.md)
        assert PACKETS - SWAPS <= pair.stats()["rule:allow_flow"][0] <= PACKETS
