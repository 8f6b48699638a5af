"""Prometheus metrics for `fw-load run`, read from the pinned maps at every scrape."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

from prometheus_client import Counter, Histogram, Info
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    InfoMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector, CollectorRegistry

from fwc.artifact.manifest import Manifest
from fwc.loader.errors import LoaderError
from fwc.loader.kernel import libbpf
from fwc.loader.kernel.meta import read_meta_map
from fwc.loader.kernel.program import read_counters
from fwc.loader.node import attach, netlink, pins

_CLASSES = ("default", "malformed", "non_ip", "would_drop")
_RATE_LIMIT_RESULTS = {"rate_limit_pass": "pass", "rate_limit_drop": "drop"}
# map types whose entries come and go (an LRU one evicts when full): fwc_map_entries counts them
_KEYED = ("hash", "lru_hash", "percpu_hash", "lru_percpu_hash", "lpm_trie")
# apply results, the `result` label of fwc_applies_total: fw-load apply's exit codes 0, 1, 2
RESULTS = ("ok", "refused", "error")


class DaemonMetrics:
    """What the daemon itself counts: applies (any path), refused watched artifacts,
    reconciles and the repairs before them."""

    def __init__(self, registry: CollectorRegistry, reasons: tuple[str, ...]) -> None:
        self.applies = Counter(
            "fwc_applies",
            "Applies the daemon ran, by result (ok, refused by the lockout check, error).",
            ["result"],
            registry=registry,
        )
        self.duration = Histogram(
            "fwc_apply_duration_seconds",
            "How long an apply took, from request (or a new watched artifact) to done.",
            buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
            registry=registry,
        )
        self.rejected = Counter(
            "fwc_watch_rejected",
            "Watched artifacts not applied (the running policy stayed), by reason.",
            ["reason"],
            registry=registry,
        )
        self.reconciles = Counter(
            "fwc_reconciles",
            "Reconciles of the interfaces with the pinned policy, by result (ok, failed: "
            "retried at the next link event or within 5 s).",
            ["result"],
            registry=registry,
        )
        self.repairs = Counter(
            "fwc_repairs",
            "What the daemon put right before a reconcile: state a killed fw-load left "
            "(recovered), pins removed under it and pinned again from its own references "
            "(restored), a conntrack table deleted under it and created again "
            "(conntrack_table).",
            ["kind"],
            registry=registry,
        )
        self.artifact = Info(
            "fwc_artifact",
            "The artifact the daemon applied last: its sha256 and where it came from.",
            registry=registry,
        )
        # every label value present from the start, so rate() and alerts see a zero
        for result in RESULTS:
            self.applies.labels(result)
        for reason in reasons:
            self.rejected.labels(reason)
        for result in ("ok", "failed"):
            self.reconciles.labels(result)
        for kind in ("recovered", "restored"):
            self.repairs.labels(kind)

    def applied(self, result: str, seconds: float) -> None:
        self.applies.labels(result).inc()
        self.duration.observe(seconds)

    def digest(self, sha256: str, source: str) -> None:
        self.artifact.info({"digest": sha256, "source": source})


class PolicyCollector(Collector):
    """Counters, attachments and identity of the pinned policy the daemon follows."""

    def __init__(self, root: Path, policy: Callable[[], str]) -> None:
        self.root = root
        # asked at every scrape: a control request may apply a policy of another name
        self.policy = policy

    def collect(self) -> Iterator[Metric]:
        policy = self.policy()
        if not policy:
            return
        pinned = pins.policy_pins(self.root, policy)
        try:
            manifest = read_meta_map(pinned.meta)
            counts = self._counts(pinned, manifest)
        except LoaderError:
            return
        actions = {rule.name: rule.action for rule in manifest.rules.rows()}
        labels = ["policy", "rule", "action"]
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
        limited = CounterMetricFamily(
            "fwc_rate_limit_packets",
            "Packets of a rate_limit rule by what its bucket decided: pass (a token) or drop.",
            labels=["policy", "rule", "result"],
        )
        for name, (p, b) in counts.items():
            kind, _, rule = name.partition(":")
            if kind in _RATE_LIMIT_RESULTS:
                limited.add_metric([policy, rule, _RATE_LIMIT_RESULTS[kind]], p)
            elif kind == "rule":
                action = actions.get(rule, "unknown")
                rule_packets.add_metric([policy, rule, action], p)
                rule_bytes.add_metric([policy, rule, action], b)
            elif name in _CLASSES:
                packets.add_metric([policy, name], p)
                octets.add_metric([policy, name], b)
        yield from (rule_packets, rule_bytes, packets, octets, limited)
        yield self._attached(policy)
        yield from _map_pressure(policy, pinned)
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


def _map_pressure(policy: str, pinned: pins.PolicyPins) -> Iterator[Metric]:
    """Entries and capacity of each keyed map the policy pins (an LRU map at capacity evicts)."""
    labels = ["policy", "map", "type"]
    entries = GaugeMetricFamily(
        "fwc_map_entries", "Entries in a hash, LRU or LPM map of the policy.", labels=labels
    )
    capacity = GaugeMetricFamily(
        "fwc_map_capacity", "max_entries of a hash, LRU or LPM map of the policy.", labels=labels
    )
    try:
        names = sorted(p.name for p in pinned.maps_dir.iterdir())
    except OSError:
        names = []
    for name in names:
        try:
            fd = libbpf.obj_get(pinned.map(name))
        except LoaderError:
            continue
        try:
            info = libbpf.map_info(fd)
            kind = libbpf.map_type_name(info.type)
            if kind in _KEYED:
                values = [policy, name, kind]
                entries.add_metric(values, _count_keys(fd, info.key_size, info.max_entries))
                capacity.add_metric(values, info.max_entries)
        except LoaderError:
            continue
        finally:
            os.close(fd)
    yield entries
    yield capacity


def _count_keys(fd: int, key_size: int, limit: int) -> int:
    # an LRU map evicting meanwhile can send the walk back to its start: never past capacity
    count, key = 0, libbpf.map_next_key(fd, None, key_size)
    while key is not None and count < limit:
        count += 1
        key = libbpf.map_next_key(fd, key, key_size)
    return count
