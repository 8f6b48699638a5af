"""A tables artifact attached by `ip link ... xdp obj` (no fw-load, so no seeded tables)
aborts every packet, counted nowhere; the constants artifact of the same policy runs."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest

from fwc.compiler.oracle import frames as fr
from fwc.loader.kernel import libbpf
from fwc.loader.kernel.program import read_counters
from tests.loader_netns import FWC, sh, udp_delivered, veth_pair

pytestmark = [pytest.mark.kernel, pytest.mark.netns]

POLICY = """
name: unseeded
default_action: allow
rules:
  - {name: deny_udp, priority: 10, action: deny, protocol: udp, destination_ports: [7501]}
"""
XDP_ABORTED = 0
ARP = fr.ethernet(0x0806) + bytes(28)
ALLOWED_UDP = fr.build_frame(fr.fields_from_mapping({"proto": "udp", "dport": 7000}))


def _compile(tmp_path: Path, strategy: str) -> Path:
    source = tmp_path / "policy.yaml"
    source.write_text(POLICY)
    out = tmp_path / f"{strategy}.o"
    # default allow: the bundled invariants refuse it, and this test is about loaders
    sh(
        FWC,
        "compile",
        str(source),
        "-o",
        str(out),
        "--strategy",
        strategy,
        "--no-gate",
        timeout=120,
    )
    return out


def _attach(ns: str, dev: str, artifact: Path) -> int:
    """`ip link set dev DEV xdp obj ARTIFACT sec xdp`; the program id."""
    sh("ip", "-n", ns, "link", "set", "dev", dev, "xdp", "obj", str(artifact), "sec", "xdp")
    shown = sh("ip", "-n", ns, "-d", "link", "show", "dev", dev).stdout
    found = re.search(r"prog/xdp id (\d+)", shown)
    assert found, shown
    return int(found.group(1))


def _xdp_drops(ns: str, dev: str) -> int:
    stats = subprocess.run(
        ["ip", "netns", "exec", ns, "ethtool", "-S", dev], capture_output=True, text=True
    ).stdout
    return sum(int(n) for n in re.findall(r"rx_queue_\d+_xdp_drops: (\d+)", stats))


def test_unseeded_tables_abort_every_packet(tmp_path: Path) -> None:
    artifact = _compile(tmp_path, "tables")
    with veth_pair(subnet=16) as pair:
        prog_id = _attach(pair.ns_a, pair.if_a, artifact)
        fd = libbpf.prog_get_fd_by_id(prog_id)
        try:
            # the very program ip attached, its maps as ip left them
            for frame in (ALLOWED_UDP, ARP):
                assert libbpf.prog_test_run(fd, frame)[0] == XDP_ABORTED
            counters = next(
                m for m in libbpf.prog_info(fd).map_ids if _map_name(m) == "fwc_counters"
            )
        finally:
            os.close(fd)
        # real traffic: nothing gets through (ARP neither), every packet an XDP drop
        assert udp_delivered(pair, 7000, 5) == 0
        assert _xdp_drops(pair.ns_a, pair.if_a) > 0
        map_fd = libbpf.map_get_fd_by_id(counters)
        try:
            entries = libbpf.map_info(map_fd).max_entries
            assert read_counters(map_fd, entries) == [(0, 0)] * entries  # counted nowhere
        finally:
            os.close(map_fd)


def test_constants_artifact_runs_from_ip_link(tmp_path: Path) -> None:
    artifact = _compile(tmp_path, "constants")
    with veth_pair(subnet=16) as pair:
        _attach(pair.ns_a, pair.if_a, artifact)
        assert (udp_delivered(pair, 7000, 5), udp_delivered(pair, 7501, 5)) == (5, 0)


def _map_name(map_id: int) -> str:
    fd = libbpf.map_get_fd_by_id(map_id)
    try:
        return libbpf.map_info(fd).name
    finally:
        os.close(fd)
