"""Prometheus metrics for `fw-load run`, read from the pinned maps at every scrape."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    InfoMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from fwc.artifact.manifest import Manifest
from fwc.loader.errors import LoaderError
from fwc.loader.kernel import libbpf
from fwc.loader.kernel.meta import read_meta_map
from fwc.loader.kernel.program import read_counters
from fwc.loader.node import attach, netlink, pins

_CLASSES = ("default", "malformed", "non_ip", "would_drop")


class PolicyCollector(Collector):
    """Counters, attachments and identity of the pinned policy the daemon follows."""

    def __init__(self, root: Path, policy: Callable[[], str]) -> None:
        self.root = root
        # asked at every scrape: a control request may apply a policy of another name
        self.policy = policy

    def collect(self) -> Iterator[Metric]:
        policy = self.policy()
        pinned = pins.policy_pins(self.root, policy)
        try:
            manifest = read_meta_map(pinned.meta)
            counts = self._counts(pinned, manifest)
        except LoaderError:
            return
        labels = ["policy", "rule"]
        rule_packets = CounterMetricFamily(
            "fwc_rule_packets", "Packets decided by a rule.", labels=labels
        )
        rule_bytes = CounterMetricFamily(
            "fwc_rule_bytes", "Bytes decided by a rule.", labels=labels
        )
        class_labels = ["policy", "class"]
        packets = CounterMetricFamily(
            "fwc_packets",
            "Packets by class: default action, malformed, non-IP, would drop (dry-run).",
            labels=class_labels,
        )
        octets = CounterMetricFamily("fwc_bytes", "Bytes by class.", labels=class_labels)
        for name, (p, b) in counts.items():
            kind, _, rule = name.partition(":")
            if kind == "rule":
                rule_packets.add_metric([policy, rule], p)
                rule_bytes.add_metric([policy, rule], b)
            elif name in _CLASSES:
                packets.add_metric([policy, name], p)
                octets.add_metric([policy, name], b)
        yield from (rule_packets, rule_bytes, packets, octets)
        yield self._attached(policy)
        info = InfoMetricFamily("fwc_policy", "The policy fw-load keeps attached.")
        info.add_metric(
            [],
            {
                "policy": policy,
                "sha256": (manifest.fw_load.artifact_sha256 or "") if manifest.fw_load else "",
                "source_sha256": manifest.policy.sha256,
                "dry_run": str(manifest.dry_run).lower(),
            },
        )
        yield info

    def _counts(self, pinned: pins.PolicyPins, manifest: Manifest) -> dict[str, tuple[int, int]]:
        slots = dict(manifest.counters.slots.pairs())
        fd = libbpf.obj_get(pinned.map(manifest.counters.map))
        try:
            entries = libbpf.map_info(fd).max_entries
            values = read_counters(fd, entries)
        finally:
            os.close(fd)
        return {name: values[index] for index, name in slots.items() if index < entries}

    def _attached(self, policy: str) -> GaugeMetricFamily:
        gauge = GaugeMetricFamily(
            "fwc_interface_attached",
            "1 for each interface the policy is attached to, labelled with the XDP mode.",
            labels=["policy", "interface", "mode"],
        )
        interfaces = netlink.list_interfaces()
        by_index = {i.index: i for i in interfaces}
        for index, holder in sorted(attach.holders(self.root, interfaces).items()):
            if holder.policy.dir.name == policy:
                iface = by_index[index]
                gauge.add_metric([policy, iface.name, iface.xdp_mode or "unknown"], 1)
        return gauge
