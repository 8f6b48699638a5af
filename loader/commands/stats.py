"""`fw-load stats`: per-rule counters of applied policies, summed over CPUs, from their pins."""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

from fwc.loader.errors import LoaderError
from fwc.loader.kernel import libbpf
from fwc.loader.kernel.meta import read_meta_map
from fwc.loader.kernel.program import read_counters
from fwc.loader.node.bpffs import require_bpffs
from fwc.loader.node.pins import PolicyPins, checked_name, pin_root, policies, policy_pins
from fwc.terminal import escape_lines


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--policy", metavar="NAME", help="only this applied policy")
    parser.add_argument("--json", action="store_true", help="print one JSON document")
    parser.add_argument("--pin-root", metavar="DIR", help="bpffs directory fw-load pins under")


def run(args: argparse.Namespace) -> int:
    if args.policy:
        checked_name(args.policy)
    root = pin_root(args.pin_root)
    require_bpffs(root)
    if args.policy:
        selected = policy_pins(root, args.policy)
        if not selected.exists():
            raise LoaderError(
                f"policy {args.policy!r} is not applied (nothing pinned at {selected.dir})"
            )
        found = [selected]
    else:
        found = list(policies(root))
    report = [policy_stats(pins) for pins in found]
    if args.json:
        print(json.dumps({"policies": report}, indent=2, sort_keys=True))
    elif not report:
        print(f"no policy is applied (nothing pinned under {root})")
    else:
        sys.stdout.write("\n".join(render_text(entry) for entry in report))
    return 0


def policy_stats(pins: PolicyPins) -> dict[str, Any]:
    """One policy's counters: every manifest slot by name, with packets and bytes."""
    if not pins.meta.exists():
        raise LoaderError(
            f"policy {pins.dir.name!r} has no manifest pin at {pins.meta}; apply it again"
        )
    manifest = read_meta_map(pins.meta)
    counters_map = manifest.counters.map
    fd = libbpf.obj_get(pins.map(counters_map))
    try:
        values = read_counters(fd, libbpf.map_info(fd).max_entries)
    finally:
        os.close(fd)
    actions = {f"rule:{rule.name}": rule.action for rule in manifest.rules.rows()}
    slots = []
    for index, name in manifest.counters.slots.pairs():
        packets, octets = values[index] if index < len(values) else (0, 0)
        entry = {"index": index, "name": name, "packets": packets, "bytes": octets}
        if name in actions:
            entry["action"] = actions[name]
        slots.append(entry)
    return {
        "policy": pins.dir.name,
        # the artifact's identity as fw-load recorded it, and the policy source's digest
        "sha256": manifest.fw_load.artifact_sha256 if manifest.fw_load else None,
        "source_sha256": manifest.policy.sha256,
        "dry_run": manifest.dry_run,
        "counters": slots,
    }


def render_text(entry: dict[str, Any]) -> str:
    header = (
        f"policy {entry['policy']}  artifact sha256 {entry['sha256'] or '-'}  "
        f"source sha256 {entry['source_sha256']}"
    )
    if entry["dry_run"]:
        header += "  (dry run)"
    rows = [["counter", "action", "packets", "bytes"]] + [
        [c["name"], c.get("action", ""), str(c["packets"]), str(c["bytes"])]
        for c in entry["counters"]
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    lines = [header]
    for row in rows:
        name, action, packets, octets = (
            row[0].ljust(widths[0]),
            row[1].ljust(widths[1]),
            row[2].rjust(widths[2]),
            row[3].rjust(widths[3]),
        )
        lines.append(f"  {name}  {action}  {packets}  {octets}")
    return escape_lines("\n".join(lines) + "\n")
