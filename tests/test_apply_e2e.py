"""fw-load apply end to end: real policies on a veth pair, real ICMP/TCP/UDP, counters."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.loader_netns import (
    Pair,
    compile_policy,
    pings,
    tcp_connects,
    udp_delivered,
    veth_pair,
)

pytestmark = [pytest.mark.kernel, pytest.mark.netns]

WEB = """
name: e2e-web
default_action: deny
rules:
  - {name: allow_icmp, priority: 10, action: allow, protocol: icmp}
  - {name: allow_tcp_8080, priority: 20, action: allow, protocol: tcp, destination_ports: [8080]}
  - {name: allow_udp_5353, priority: 30, action: allow, protocol: udp, destination_ports: [5353]}
"""

OPEN = """
name: e2e-open
default_action: allow
rules:
  - {name: deny_icmp, priority: 10, action: deny, protocol: icmp}
  - {name: deny_udp_5354, priority: 20, action: deny, protocol: udp, destination_ports: [5354]}
"""

COUNT = 20


def udp_bytes(count: int) -> int:
    """Frame bytes of the sender's datagrams `0:fwc` .. `<count-1>:fwc` (Ethernet+IPv4+UDP)."""
    return sum(14 + 20 + 8 + len(f"{i}:fwc") for i in range(count))


@pytest.fixture
def pair() -> Iterator[Pair]:
    with veth_pair(subnet=1) as p:
        yield p


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    out = tmp_path_factory.mktemp("e2e")
    return {
        "web": compile_policy(WEB, out),
        "open": compile_policy(OPEN, out),
        "web-dry": compile_policy(WEB, out, dry_run=True),
    }


def test_default_deny_policy_lets_through_only_what_it_allows(
    pair: Pair, artifacts: dict[str, Path]
) -> None:
    applied = pair.fwload("apply", str(artifacts["web"]))
    assert applied.returncode == 0, applied.stderr
    assert f"{pair.if_a}: attached (native)" in applied.stdout
    assert pings(pair)
    assert tcp_connects(pair, 8080)
    assert not tcp_connects(pair, 8081)
    assert udp_delivered(pair, 5353, COUNT) == COUNT
    assert udp_delivered(pair, 5354, COUNT) == 0
    stats = pair.stats()
    assert stats["rule:allow_udp_5353"] == (COUNT, udp_bytes(COUNT))
    assert stats["rule:allow_icmp"][0] == 1
    assert stats["rule:allow_tcp_8080"][0] >= 3  # handshake ACK, data ACK, FIN...
    # denied: the UDP datagrams, the 8081 SYN(s), and IPv6 neighbour chatter
    assert stats["default"][0] >= COUNT + 1


def test_default_allow_policy_drops_only_what_it_denies(
    pair: Pair, artifacts: dict[str, Path]
) -> None:
    assert pair.fwload("apply", str(artifacts["open"])).returncode == 0
    assert not pings(pair)
    assert tcp_connects(pair, 8081)
    assert udp_delivered(pair, 5354, COUNT) == 0
    assert udp_delivered(pair, 5353, COUNT) == COUNT
    stats = pair.stats()
    assert stats["rule:deny_udp_5354"] == (COUNT, udp_bytes(COUNT))
    assert stats["rule:deny_icmp"][0] == 1


def test_switching_policies_replaces_in_place(pair: Pair, artifacts: dict[str, Path]) -> None:
    assert pair.fwload("apply", str(artifacts["web"])).returncode == 0
    switched = pair.fwload("apply", str(artifacts["open"]))
    assert switched.returncode == 0, switched.stderr
    assert f"{pair.if_a}: replaced (native)" in switched.stdout
    assert pair.attached() == {pair.if_a: "e2e-open"}
    assert [p["name"] for p in pair.status()["policies"]] == ["e2e-open"]
    assert not pings(pair)


def test_dry_run_drops_nothing_and_counts_would_drop(
    pair: Pair, artifacts: dict[str, Path]
) -> None:
    refused = pair.fwload("apply", "--dry-run", str(artifacts["web"]))
    assert refused.returncode == 2
    assert "fwc compile --dry-run" in refused.stderr
    applied = pair.fwload("apply", "--dry-run", str(artifacts["web-dry"]))
    assert applied.returncode == 0, applied.stderr
    assert "dry-run" in applied.stdout
    assert udp_delivered(pair, 5354, COUNT) == COUNT
    assert tcp_connects(pair, 8081)
    stats = pair.stats()
    assert stats["would_drop"][0] >= COUNT + 1
    assert pair.status()["policies"][0]["dry_run"] is True
