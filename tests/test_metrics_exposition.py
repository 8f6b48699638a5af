"""The daemon's /metrics as operators read it: `promtool check metrics` finds nothing to say,
and the families the alerts use are there (actions, rate-limit verdicts, map pressure,
applies, the artifact digest)."""

from __future__ import annotations

import hashlib
import os
import subprocess
from pathlib import Path

import pytest

from tests.configmap import ConfigMapVolume
from tests.loader_netns import compile_policy, udp_delivered, veth_pair, wait_until
from tests.watch_node import watch_node

pytestmark = [pytest.mark.kernel, pytest.mark.netns]

POLICY = """
name: scraped
default_action: allow
rules:
  - {name: deny_udp, priority: 10, action: deny, protocol: udp, destination_ports: [7401]}
  - {name: limit_udp, priority: 20, action: rate_limit, protocol: udp, destination_ports: [7402],
     rate_limit_pps: 1, rate_limit_burst: 2}
"""


def test_exposition_passes_promtool(tmp_path: Path) -> None:
    artifact = compile_policy(POLICY, tmp_path).read_bytes()
    volume = ConfigMapVolume(tmp_path / "volume")
    volume.artifact(artifact)
    port = 20000 + (os.getpid() + 11) % 20000
    with (
        veth_pair(subnet=15) as pair,
        watch_node(pair, volume.root / "fw.o", port, tmp_path / "node.log") as node,
    ):
        assert wait_until(lambda: node.get("/readyz")[0] == 200, 30), node.stderr()
        assert udp_delivered(pair, 7401, 3) == 0
        passed = udp_delivered(pair, 7402, 10)
        assert passed < 10
        code, text = node.get("/metrics")
    assert code == 200
    lint = subprocess.run(
        ["promtool", "check", "metrics"], input=text, capture_output=True, text=True
    )
    assert lint.returncode == 0, lint.stdout + lint.stderr
    samples = dict(line.rsplit(" ", 1) for line in text.splitlines() if not line.startswith("#"))
    rule = 'fwc_rule_packets_total{action="deny",policy="scraped",rule="deny_udp"}'
    assert float(samples[rule]) == 3
    limit = 'fwc_rate_limit_packets_total{policy="scraped",result="%s",rule="limit_udp"}'
    assert (float(samples[limit % "pass"]), float(samples[limit % "drop"])) == (passed, 10 - passed)
    assert samples['fwc_applies_total{result="ok"}'] == "1.0"
    assert samples["fwc_apply_duration_seconds_count"] == "1.0"
    digest = hashlib.sha256(artifact).hexdigest()
    assert f'fwc_artifact_info{{digest="{digest}",source="{volume.root}/fw.o"}}' in samples
    buckets = '{map="fwc_buckets",policy="scraped",type="lru_hash"}'
    assert samples[f"fwc_map_entries{buckets}"] == "1.0"  # one source address, one rule
    assert float(samples[f"fwc_map_capacity{buckets}"]) > 1
    assert samples['fwc_watch_rejected_total{reason="digest_mismatch"}'] == "0.0"
