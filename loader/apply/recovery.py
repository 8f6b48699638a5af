"""Recovery from a killed fw-load, decided by what the kernel runs (links, program ids, the
live generation) and not by the pins alone; it runs before every apply, detach, status and
daemon reconcile, under the pin-root lock."""

from __future__ import annotations

import os
import struct
from pathlib import Path

from fwc.artifact.layout import GEN_MAP
from fwc.artifact.manifest import Manifest
from fwc.loader.apply.manifest_cache import ManifestCache
from fwc.loader.errors import LoaderError
from fwc.loader.kernel import libbpf
from fwc.loader.kernel.meta import read_meta_map
from fwc.loader.live.update import wait_for_readers
from fwc.loader.node import attach, netlink, pins

_U32 = struct.Struct("<I")


def recover(root: Path, manifests: ManifestCache | None = None) -> list[str]:
    """Bring the pins under `root` of this network namespace in line with the kernel; what
    was done, one line each (nothing when no fw-load was killed mid-way).

    - A program swap whose new program runs somewhere (or whose commit began) is finished:
      every link of the policy runs the new program and the staging pins become the
      policy's. One whose new program runs nowhere is rolled back by unpinning its staging.
    - A live update that flipped without recording its manifest gets the manifest it left in
      staging, or else is flipped back to the generation the pinned manifest describes.
    - Any link that runs another program than its policy's pinned one is put back on it.

    `manifests` (the daemon's warm cache) spares parsing a large live manifest again.
    """
    if not root.is_dir():
        return []
    changes: list[str] = []
    found = [left for left in pins.leftovers(root) if _ours(root, left)]
    for left in found:
        if left.kind == "staging" and pins.PolicyPins(left.path).prog.exists():
            changes.extend(_finish_swap(root, left))
    for policy in pins.own_policies(root):
        stagings = [
            pins.PolicyPins(left.path)
            for left in found
            if left.kind == "staging" and left.policy == policy.dir.name
        ]
        changes.extend(_settle_flip(policy, stagings, manifests))
    for left in pins.leftovers(root):
        if _ours(root, left):
            # unpinning a leftover staging link detaches it: the rollback the dead process
            # could not finish
            pins.remove_tree(left.path)
    for policy in pins.own_policies(root):
        changes.extend(_align_links(policy))
    return changes


def _ours(root: Path, left: pins.Leftover) -> bool:
    owner = pins.PolicyPins(left.path).owner()
    if owner is not None:
        return owner == pins.netns_cookie()
    return pins.policy_pins(root, left.policy).mine()


def _finish_swap(root: Path, left: pins.Leftover) -> list[str]:
    staging = pins.PolicyPins(left.path)
    final = pins.policy_pins(root, left.policy)
    trash = pins.PolicyPins(pins.trash_dir(final, left.pid))
    new_id = attach.pinned_prog_id(staging)
    if not new_id or not staging.meta.exists():
        return []
    olds = [p for p in (final, trash) if p.dir.is_dir()]
    old_ids = {attach.pinned_prog_id(p) for p in olds} - {0, new_id}
    running = {i.xdp_prog_id for i in netlink.list_interfaces()}
    linked = {
        info.prog_id
        for p in (staging, *olds)
        for name in p.linked_interfaces()
        if (info := attach.pinned_link(p.link(name))) is not None and info.ifindex
    }
    if not trash.dir.is_dir() and new_id not in running | linked:
        # never swapped in anywhere: unpinning the staging (with the leftovers) rolls it back
        return [
            f"policy {left.policy}: rolled back the program swap of a killed fw-load (pid "
            f"{left.pid}): its new program never ran"
        ]
    new_fd = libbpf.obj_get(staging.prog)
    try:
        for old in olds:
            for name in old.linked_interfaces():
                pin = old.link(name)
                info = attach.pinned_link(pin)
                if info is None or not info.ifindex:
                    continue
                if info.prog_id in old_ids:
                    attach.swap_link(pin, new_fd, info.prog_id)
                if not staging.link(name).exists():
                    pin.rename(staging.link(name))
        for iface in netlink.list_interfaces():
            # what still runs an old program now is attached through netlink
            if iface.xdp_prog_id in old_ids:
                attach.swap_netlink(iface, new_fd, iface.xdp_prog_id)
    finally:
        os.close(new_fd)
    if final.dir.is_dir() and trash.dir.is_dir():
        pins.remove_tree(trash.dir)
    pins.commit(staging, final)
    if trash.dir.is_dir():
        pins.remove_tree(trash.dir)
    return [
        f"policy {left.policy}: finished the program swap of a killed fw-load (pid "
        f"{left.pid}): its new program (id {new_id}) already ran"
    ]


def _live_generation(policy: pins.PolicyPins) -> tuple[int, int] | None:
    """(fd of the pinned fwc_gen map, the generation it enforces), None without one."""
    if not policy.map(GEN_MAP).exists():
        return None
    fd = libbpf.obj_get(policy.map(GEN_MAP))
    value = libbpf.map_lookup(fd, _U32.pack(0), 4) or bytes(4)
    return fd, _U32.unpack(value)[0]


def _settle_flip(
    policy: pins.PolicyPins, stagings: list[pins.PolicyPins], manifests: ManifestCache | None
) -> list[str]:
    try:
        manifest = manifests.read(policy.meta) if manifests else read_meta_map(policy.meta)
    except LoaderError:
        return []
    record = manifest.fw_load
    gen = _live_generation(policy) if record is not None else None
    if record is None or gen is None:
        return []
    fd, live = gen
    try:
        if live == record.generation:
            return []
        name = policy.dir.name
        for staging in stagings:
            pending = _meta_of(staging)
            if pending is not None and pending.fw_load and pending.fw_load.generation == live:
                os.rename(staging.meta, policy.meta)
                return [
                    f"policy {name}: recorded the manifest of generation {live} (sha256 "
                    f"{pending.policy.sha256}) that a killed live update had flipped to"
                ]
        libbpf.map_update(fd, _U32.pack(0), _U32.pack(record.generation))
        # packets that started on the generation flipped away from are done before the
        # next update may write it
        wait_for_readers()
        return [
            f"policy {name}: a killed live update flipped to generation {live} without "
            f"recording it; flipped back to generation {record.generation} (sha256 "
            f"{manifest.policy.sha256}, as pinned)"
        ]
    finally:
        os.close(fd)


def _meta_of(staging: pins.PolicyPins) -> Manifest | None:
    if staging.prog.exists() or not staging.meta.exists():
        return None
    try:
        return read_meta_map(staging.meta)
    except LoaderError:
        return None


def _align_links(policy: pins.PolicyPins) -> list[str]:
    """Put every live link of `policy` back on its pinned program (the pins are the truth
    of what was applied; a link running anything else was left by a crash)."""
    prog_id = attach.pinned_prog_id(policy)
    if not prog_id:
        return []
    changes: list[str] = []
    for name in policy.linked_interfaces():
        info = attach.pinned_link(policy.link(name))
        if info is None or not info.ifindex or info.prog_id == prog_id:
            continue
        fd = libbpf.obj_get(policy.prog)
        try:
            attach.swap_link(policy.link(name), fd, info.prog_id)
        finally:
            os.close(fd)
        changes.append(
            f"policy {policy.dir.name}: {name} ran program id {info.prog_id}, not the pinned "
            f"{prog_id}; put back on it"
        )
    return changes
