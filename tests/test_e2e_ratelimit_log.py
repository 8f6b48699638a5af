"""rate_limit and log: true through `fw-load apply` on a veth pair: real UDP, `fw-load events`."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.loader_netns import Pair, compile_policy, udp_delivered, veth_pair

pytestmark = [pytest.mark.kernel, pytest.mark.netns]

POLICY = """
name: e2e-limit
default_action: allow
rules:
  - {name: limit_udp, priority: 10, action: rate_limit, protocol: udp, destination_ports: [5353],
     rate_limit_pps: 1, rate_limit_burst: 5, log: true}
"""
COUNT = 20


@pytest.fixture
def pair() -> Iterator[Pair]:
    with veth_pair(subnet=3) as p:
        yield p


def test_bucket_limits_real_traffic_and_events_report_it(pair: Pair, tmp_path: Path) -> None:
    applied = pair.fwload("apply", str(compile_policy(POLICY, tmp_path)))
    assert applied.returncode == 0, applied.stderr
    delivered = udp_delivered(pair, 5353, COUNT)
    # 5 from the burst, plus one per second the sending took (it takes well under 2 s)
    assert 5 <= delivered <= 6, delivered
    stats = pair.stats()
    assert stats["rule:limit_udp"][0] == COUNT
    assert stats["rate_limit_pass:limit_udp"][0] == delivered
    assert stats["rate_limit_drop:limit_udp"][0] == COUNT - delivered
    events = pair.fwload("events", "--json", "--count", str(COUNT), "--duration", "5")
    assert events.returncode == 0, events.stderr
    lines = [json.loads(line) for line in events.stdout.splitlines()]
    assert len(lines) == COUNT
    assert {(e["rule"], e["src"], e["dst"], e["dport"]) for e in lines} == {
        ("limit_udp", pair.ip_b, pair.ip_a, 5353)
    }
    verdicts = [e["verdict"] for e in lines]
    assert verdicts.count("pass") == delivered and verdicts.count("drop") == COUNT - delivered
