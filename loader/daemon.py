"""`fw-load run`: apply once, then keep the pinned policy on every matching interface as links
come, go, flap and get renamed. The pins are the only state: each event re-reconciles them."""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from dataclasses import dataclass, replace
from pathlib import Path
from types import FrameType

from prometheus_client import start_http_server
from prometheus_client.registry import CollectorRegistry

from fwc.loader import attach, libbpf, netlink, pins
from fwc.loader.apply import ApplyOptions, apply
from fwc.loader.cli import LoaderError
from fwc.loader.meta import read_meta_map
from fwc.loader.metrics import PolicyCollector

# a safety net for events the socket dropped (ENOBUFS under a storm of link changes)
_RESYNC_SECONDS = 5.0
# how long a signal may wait to be noticed (select() restarts after a Python signal handler)
_POLL_SECONDS = 0.2


@dataclass(frozen=True)
class DaemonOptions:
    apply: ApplyOptions
    metrics_addr: str | None
    detach_on_exit: bool


def _say(message: str) -> None:
    print(f"fw-load run: {message}", file=sys.stderr, flush=True)


def reconcile(root: Path, policy: str, offload: bool, replace_foreign: bool) -> list[str]:
    """Bring the policy's link pins in line with the interfaces that exist now; return what
    changed, one line each."""
    final = pins.policy_pins(root, policy)
    manifest = read_meta_map(final.meta)
    selection = manifest["policy"].get("interfaces") or {}
    include = list(selection.get("include") or [])
    exclude = list(selection.get("exclude") or [])
    changes: list[str] = []
    interfaces = netlink.list_interfaces()
    by_index = {i.index: i for i in interfaces}
    for name in final.linked_interfaces():
        info = attach.pinned_link(final.link(name))
        if info is None or info.ifindex not in by_index:
            final.link(name).unlink(missing_ok=True)
            changes.append(f"{name}: gone, link forgotten")
            continue
        current = by_index[info.ifindex].name
        if current != name and not final.link(current).exists():
            final.link(name).rename(final.link(current))
            changes.append(f"{name}: renamed to {current}, link pin moved")
    held = attach.holders(root, interfaces)
    wanted = {
        i.index for i in netlink.select_interfaces(interfaces, include, exclude, require_up=False)
    }
    for index, holder in sorted(held.items()):
        if holder.policy.dir == final.dir and index not in wanted:
            attach.detach(by_index[index], holder)
            changes.append(f"{by_index[index].name}: no longer selected, detached")
    missing = [by_index[i] for i in sorted(wanted) if i not in held]
    if not missing:
        return changes
    prog_fd = libbpf.obj_get(final.prog)
    try:
        for iface in missing:
            changes.append(_attach_one(final, prog_fd, iface, offload, replace_foreign))
    finally:
        os.close(prog_fd)
    return changes


def _attach_one(
    final: pins.PolicyPins, prog_fd: int, iface: netlink.Interface, offload: bool, foreign: bool
) -> str:
    if iface.xdp_prog_id:
        if not foreign:
            return f"{iface.name}: runs foreign XDP program {iface.xdp_prog_id}, left alone"
        attach.swap_netlink(iface, prog_fd, iface.xdp_prog_id)
        return f"{iface.name}: foreign program replaced"
    final.link(iface.name).unlink(missing_ok=True)
    try:
        mode = attach.attach_pinned(prog_fd, iface, offload, final.link(iface.name))
    except LoaderError as exc:
        return f"{iface.name}: not attached: {exc}"
    return f"{iface.name}: attached ({mode})"


def _reconcile_logged(root: Path, policy: str, opts: ApplyOptions) -> None:
    # an interface can vanish between two netlink calls: log it and retry on the next event
    try:
        with pins.locked(root):
            for change in reconcile(root, policy, opts.offload, opts.replace_foreign):
                _say(change)
    except (LoaderError, OSError) as exc:
        _say(f"reconcile failed, retrying: {exc}")


def _serve_metrics(addr: str, root: Path, policy: str) -> None:
    host, sep, port = addr.rpartition(":")
    if not sep or not port.isdigit():
        raise LoaderError(f"--metrics-addr {addr!r}: expected HOST:PORT")
    registry = CollectorRegistry()
    registry.register(PolicyCollector(root, policy))
    try:
        start_http_server(int(port), addr=host.strip("[]") or "127.0.0.1", registry=registry)
    except OSError as exc:
        raise LoaderError(f"--metrics-addr {addr}: {exc.strerror or exc}") from exc


def run(opts: DaemonOptions) -> int:
    """Apply, then follow link events until SIGTERM/SIGINT."""
    stop = threading.Event()

    def _stop(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    root = opts.apply.root
    # subscribe first, so an interface that appears during the apply is not missed
    with netlink.LinkEvents() as events:
        report = apply(replace(opts.apply, allow_no_interface=True, require_up=False))
        _say(
            f"policy {report.policy} ({report.sha256[:12]}) on "
            + (", ".join(f"{i.name} ({i.mode})" for i in report.interfaces) or "no interface yet")
        )
        if opts.metrics_addr:
            _serve_metrics(opts.metrics_addr, root, report.policy)
        changed, last = True, 0.0
        while not stop.is_set():
            if changed or time.monotonic() - last >= _RESYNC_SECONDS:
                last = time.monotonic()
                _reconcile_logged(root, report.policy, opts.apply)
            changed = bool(events.wait(_POLL_SECONDS))
        if opts.detach_on_exit:
            with pins.locked(root):
                for policy, name in attach.release(root, None, report.policy):
                    _say(f"{name}: detached policy {policy}")
        else:
            _say("exiting; the program stays attached (fail-closed)")
    return 0
