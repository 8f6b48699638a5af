"""A fleet rehearsal on one machine: three network namespaces, each a node running
`fw-load run --watch` on its own veth pair and pin root, all following one ConfigMap-style
artifact volume. A rollout swaps the artifact atomically; the rehearsal waits until every
node reports the new digest and is ready, proves the new rules with traffic through each
node, then rolls out a broken and an unpinned artifact, which every node must refuse.

Prints the time to converge: from the swap to the last node's own `applied` event (its
wall clock), and to the moment the rehearsal saw every node ready (probing from outside,
about every 0.2 s per node, so up to that much later).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import tempfile
import time
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # for the namespace and ConfigMap helpers the tests use too

from tests.configmap import ConfigMapVolume  # noqa: E402
from tests.loader_netns import compile_policy, udp_delivered, veth_pair, wait_until  # noqa: E402
from tests.watch_node import WatchNode, watch_node  # noqa: E402

POLICY = """
name: fleet
default_action: allow
rules:
  - {{name: deny_udp, priority: 10, action: deny, protocol: udp, destination_ports: [{port}]}}
"""
OLD_PORT, NEW_PORT = 7301, 7302
PACKETS = 5


@dataclass
class Rehearsal:
    nodes: int
    converge_applied_s: float = 0.0  # swap -> the last node's applied event
    converge_ready_s: float = 0.0  # swap -> every node seen ready with the new digest
    traffic: list[tuple[int, int]] = field(default_factory=list)  # per node: (old, new) port
    refusals: dict[str, list[str]] = field(default_factory=dict)  # reason -> per node readyz
    unchanged: bool = False  # every node still ran the new digest after the bad rollouts

    def as_dict(self) -> dict[str, object]:
        return {
            "nodes": self.nodes,
            "converge_applied_s": round(self.converge_applied_s, 3),
            "converge_ready_s": round(self.converge_ready_s, 3),
            "traffic": self.traffic,
            "refusals": self.refusals,
            "unchanged": self.unchanged,
        }


def _ready_with(node: WatchNode, digest: str) -> bool:
    return node.status().get("digest") == digest and node.get("/readyz")[0] == 200


def _applied_at(node: WatchNode, digest: str) -> float:
    events = node.status()["events"]
    return max(e["at"] for e in events if e["kind"] == "applied" and e["digest"] == digest)


def rehearse(work: Path, count: int = 3, base_port: int = 0) -> Rehearsal:
    old = compile_policy(POLICY.format(port=OLD_PORT), work).read_bytes()
    new = compile_policy(POLICY.format(port=NEW_PORT), work).read_bytes()
    new_digest = hashlib.sha256(new).hexdigest()
    volume = ConfigMapVolume(work / "artifact")
    volume.artifact(old)
    base_port = base_port or 20000 + (os.getpid() * 7) % 20000
    result = Rehearsal(count)
    with ExitStack() as stack:
        nodes: list[WatchNode] = []
        for i in range(count):
            pair = stack.enter_context(veth_pair(subnet=20 + i))
            log = work / f"node{i}.log"
            nodes.append(
                stack.enter_context(watch_node(pair, volume.root / "fw.o", base_port, log))
            )
        old_digest = hashlib.sha256(old).hexdigest()
        for node in nodes:
            if not wait_until(lambda n=node: _ready_with(n, old_digest), 60):
                raise RuntimeError(f"a node never became ready:\n{node.stderr()}")

        swapped = time.time()
        volume.artifact(new)
        if not wait_until(lambda: all(_ready_with(n, new_digest) for n in nodes), 60):
            raise RuntimeError("the fleet did not converge:\n" + nodes[0].stderr())
        result.converge_ready_s = time.time() - swapped
        result.converge_applied_s = max(_applied_at(n, new_digest) for n in nodes) - swapped
        result.traffic = [
            (udp_delivered(n.pair, OLD_PORT, PACKETS), udp_delivered(n.pair, NEW_PORT, PACKETS))
            for n in nodes
        ]

        bad = {
            "invalid": lambda: volume.artifact(b"\x7fELF but not an fwc artifact"),
            "unpinned": lambda: volume.unpinned(old),
        }
        for reason, publish in bad.items():
            publish()
            wanted = f"rejected ({reason})"
            if not wait_until(lambda w=wanted: all(w in n.get("/readyz")[1] for n in nodes), 30):
                raise RuntimeError(f"not every node refused the {reason} artifact")
            result.refusals[reason] = [n.get("/readyz")[1].strip() for n in nodes]
        result.unchanged = all(n.status().get("digest") == new_digest for n in nodes) and all(
            (udp_delivered(n.pair, OLD_PORT, PACKETS), udp_delivered(n.pair, NEW_PORT, PACKETS))
            == (PACKETS, 0)
            for n in nodes
        )
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=3)
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="fwc-fleet-") as work:
        result = rehearse(Path(work), args.nodes)
    if args.json:
        print(json.dumps(result.as_dict(), indent=2))
        return 0
    print(f"nodes: {result.nodes}")
    print(f"converged (last node's applied event): {result.converge_applied_s:.2f} s")
    print(f"converged (every node seen ready):     {result.converge_ready_s:.2f} s")
    for i, (old_port, new_port) in enumerate(result.traffic):
        print(f"node {i}: udp/{OLD_PORT} {old_port}/{PACKETS} through, udp/{NEW_PORT} {new_port}")
    for reason, said in result.refusals.items():
        print(f"{reason} artifact refused by every node: {said[0]}")
    print(f"running policy unchanged after the bad rollouts: {result.unchanged}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
