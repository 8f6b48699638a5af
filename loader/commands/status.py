"""`fw-load status [--json]`: what is attached where, read back from bpffs pins and netlink."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from fwc.artifact.manifest import Manifest
from fwc.loader.apply import recovery
from fwc.loader.apply.transaction import check_privileges
from fwc.loader.errors import LoaderError
from fwc.loader.kernel.meta import read_meta_map
from fwc.loader.node import attach, cttable, netlink, pins
from fwc.loader.node.bpffs import require_bpffs
from fwc.terminal import escape_lines


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print JSON")
    parser.add_argument("--pin-root", help=f"bpffs directory (default {pins.DEFAULT_ROOT})")


def gather(root: Path, recovered: list[str] | None = None) -> dict[str, Any]:
    """The state of every policy pinned under `root`, checked against netlink."""
    interfaces = netlink.list_interfaces()
    by_index = {i.index: i for i in interfaces}
    held = attach.holders(root, interfaces)
    policies: list[dict[str, Any]] = []
    elsewhere: list[dict[str, Any]] = []
    for policy in pins.policies(root):
        if not policy.mine():
            # its interfaces are in another namespace: nothing here can say where it runs
            elsewhere.append({"name": policy.dir.name, "netns_cookie": policy.owner()})
            continue
        try:
            manifest: Manifest | None = read_meta_map(policy.meta)
        except LoaderError:
            manifest = None
        attached = [
            {
                "name": by_index[index].name,
                "ifindex": index,
                "mode": by_index[index].xdp_mode,
                "via": holder.kind,
            }
            for index, holder in sorted(held.items())
            if holder.policy.dir == policy.dir
        ]
        live = {a["name"] for a in attached if a["via"] == "link"}
        pinned = set(policy.linked_interfaces())
        policies.append(
            {
                "name": policy.dir.name,
                # the artifact's identity, as fw-load recorded it when it applied it
                "sha256": _artifact_sha256(manifest),
                "source_sha256": manifest.policy.sha256 if manifest else None,
                "dry_run": manifest.dry_run if manifest else None,
                "prog_id": attach.pinned_prog_id(policy),
                "interfaces": attached,
                "stale_links": sorted(pinned - live),
                "conntrack_table": _table(policy.dir.name, manifest),
                # members changed by `fw-load set` since the artifact was applied
                "sets_changed": [
                    {"name": c.name, "added": c.added, "removed": c.removed, "members": c.members}
                    for c in (manifest.fw_load.sets if manifest and manifest.fw_load else ())
                ],
            }
        )
    return {
        "pin_root": str(root),
        "netns_cookie": pins.netns_cookie(),
        "policies": policies,
        "other_namespaces": elsewhere,
        "recovered": recovered or [],
    }


def _table(policy: str, manifest: Manifest | None) -> dict[str, Any] | None:
    """The policy's conntrack table, when its artifact has state rules (or cannot be read)."""
    if manifest is not None and not cttable.needed(manifest):
        return None
    table: dict[str, Any] = {"name": f"inet {cttable.name(policy)}", "needed": manifest is not None}
    try:
        packets = cttable.packets(policy)
    except LoaderError as exc:
        return {**table, "present": None, "packets": None, "error": str(exc)}
    return {**table, "present": packets is not None, "packets": packets}


def _artifact_sha256(manifest: Manifest | None) -> str | None:
    record = manifest.fw_load if manifest else None
    return record.artifact_sha256 if record else None


def render(state: dict[str, Any]) -> str:
    lines = [f"recovered first: {change}" for change in state["recovered"]]
    if not state["policies"]:
        lines.append(f"nothing pinned under {state['pin_root']} in this network namespace")
    for policy in state["policies"]:
        dry = " dry-run" if policy["dry_run"] else ""
        lines.append(
            f"policy {policy['name']} artifact sha256 {policy['sha256']} "
            f"prog id {policy['prog_id']}{dry}"
        )
        lines.append(f"  source sha256 {policy['source_sha256']}")
        for item in policy["interfaces"]:
            lines.append(f"  {item['name']} (ifindex {item['ifindex']}): {item['mode']}")
        if not policy["interfaces"]:
            lines.append("  attached nowhere")
        for name in policy["stale_links"]:
            lines.append(f"  {name}: stale link pin (interface gone or renamed)")
        for change in policy["sets_changed"]:
            lines.append(
                f"  sets changed live: {change['name']} +{change['added']} -{change['removed']} "
                f"({change['members']} members; the artifact's set differs)"
            )
        table = policy["conntrack_table"]
        if table is not None:
            lines.append(f"  conntrack: {_describe_table(table)}")
    for other in state["other_namespaces"]:
        lines.append(
            f"policy {other['name']}: applied in another network namespace "
            f"(netns cookie {other['netns_cookie']})"
        )
    return escape_lines("\n".join(lines))


def _describe_table(table: dict[str, Any]) -> str:
    what = f"nftables table {table['name']}"
    if table["present"] is None:
        return f"{what}: cannot tell ({table['error']})"
    if table["present"]:
        return f"{what} present ({table['packets']} packets through its hook)"
    if not table["needed"]:
        return f"{what} absent"
    return (
        f"{what} MISSING: conntrack may track nothing here, so the rules with `state` see "
        "each connection as new (fw-load apply or fw-load run creates it again)"
    )


def run(args: argparse.Namespace) -> int:
    check_privileges()
    root = pins.pin_root(args.pin_root)
    require_bpffs(root)
    recovered: list[str] = []
    if root.is_dir():
        # a killed fw-load's half-done work is finished or undone first: status says the truth
        with pins.locked(root):
            recovered = recovery.recover(root)
            state = gather(root, recovered)
    else:
        state = gather(root)
    print(json.dumps(state, indent=2) if args.json else render(state))
    return 0
