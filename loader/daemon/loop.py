"""`fw-load run`: apply once, then keep the pinned policy on every matching interface as links
come, go, flap and get renamed. The pins are the only state: each event re-reconciles them.
`fw-load apply` requests arrive on the control socket and run here, warm."""

from __future__ import annotations

import contextlib
import gc
import os
import signal
import sys
import threading
import time
from dataclasses import dataclass, replace
from pathlib import Path
from types import FrameType
from typing import Any

from prometheus_client.registry import CollectorRegistry

from fwc.artifact.ifclass import IFACES_HASH_MAP, InterfaceClassTable
from fwc.loader.apply import recovery, set_report
from fwc.loader.apply import report as apply_report
from fwc.loader.apply.manifest_cache import ManifestCache
from fwc.loader.apply.transaction import ApplyOptions, ApplyReport, apply
from fwc.loader.daemon import control, health, listener, watch
from fwc.loader.daemon.held import Held
from fwc.loader.daemon.metrics import RESULTS, DaemonMetrics, PolicyCollector
from fwc.loader.daemon.server import ControlBusy, ControlServer
from fwc.loader.errors import LoaderError
from fwc.loader.kernel import libbpf
from fwc.loader.live import set_change
from fwc.loader.node import attach, cttable, ifclasses, netlink, pins
from fwc.loader.node.bpffs import on_bpffs

# a safety net for events the socket dropped (ENOBUFS under a storm of link changes)
_RESYNC_SECONDS = 5.0
# how long a signal may wait to be noticed (select() restarts after a Python signal handler)
_POLL_SECONDS = 0.2


@dataclass(frozen=True)
class DaemonOptions:
    apply: ApplyOptions
    metrics_addr: str | None
    detach_on_exit: bool
    watch: Path | None = None  # follow this artifact path (its digest pinned beside it)


def _say(message: str) -> None:
    print(f"fw-load run: {message}", file=sys.stderr, flush=True)


def reconcile(
    root: Path, policy: str, offload: bool, replace_foreign: bool, manifests: ManifestCache
) -> list[str]:
    """Bring the policy's link pins in line with the interfaces that exist now; return what
    changed, one line each."""
    final = pins.policy_pins(root, policy)
    manifest = manifests.read(final.meta)
    include = list(manifest.policy.interfaces.include)
    exclude = list(manifest.policy.interfaces.exclude)
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
    if manifest.interface_classes is not None:
        changes += _sync_classes(final, manifest.interface_classes, interfaces)
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


def _sync_classes(
    final: pins.PolicyPins, table: InterfaceClassTable, interfaces: list[netlink.Interface]
) -> list[str]:
    """The pinned interface-class map brought in line with the interfaces there are now."""
    array_fd = libbpf.obj_get(final.map(table.map))
    try:
        hash_fd = libbpf.obj_get(final.map(IFACES_HASH_MAP))
        try:
            return ifclasses.sync(array_fd, hash_fd, table, interfaces)
        finally:
            os.close(hash_fd)
    finally:
        os.close(array_fd)


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


def _reconcile_logged(
    root: Path,
    policy: str,
    opts: ApplyOptions,
    warm: ManifestCache,
    held: Held,
    metrics: DaemonMetrics,
) -> None:
    """Recover, pin again what vanished, reconcile; then hold what is pinned.

    An interface can vanish between two netlink calls: a failure is logged and retried on
    the next event.
    """
    try:
        with pins.locked(root):
            for change in recovery.recover(root, warm):
                metrics.repairs.labels("recovered").inc()
                _say(f"recovered: {change}")
            final = pins.policy_pins(root, policy)
            restored = held.restore(final)
            if restored:
                metrics.repairs.labels("restored").inc(len(restored))
                _say(
                    f"pins of policy {policy} were removed under the daemon; pinned again from "
                    f"its own references: {', '.join(restored)}"
                )
            if _table_restored(final, warm, opts.host.nft):
                metrics.repairs.labels("conntrack_table").inc()
                _say(
                    f"WARNING: {cttable.describe(policy)} was deleted under the daemon; without "
                    "it conntrack tracks nothing and every rule with `state` sees each "
                    "connection as new: created again"
                )
            for change in reconcile(root, policy, opts.offload, opts.replace_foreign, warm):
                _say(change)
            held.refresh(final)
    except (LoaderError, OSError) as exc:
        metrics.reconciles.labels("failed").inc()
        _say(f"reconcile failed, retrying: {exc}")
    else:
        metrics.reconciles.labels("ok").inc()


def _table_restored(final: pins.PolicyPins, manifests: ManifestCache, nft: str) -> bool:
    """Create the policy's conntrack table again if its artifact needs it and it is gone."""
    if not final.exists() or not cttable.needed(manifests.read(final.meta)):
        return False
    policy = final.dir.name
    if cttable.exists(policy, nft):
        return False
    cttable.ensure(policy, nft)
    return True


def _readiness(
    root: Path, state: _Control, watcher: watch.Watcher | None, probes: health.Health
) -> None:
    reason = watch.not_ready(watcher) if watcher is not None else ""
    try:
        reason = reason or health.not_ready(root, state.policy, state.manifests)
    except (LoaderError, OSError) as exc:
        reason = f"cannot tell: {exc}"
    probes.set_readiness(
        reason,
        policy=state.policy,
        digest=watcher.digest if watcher is not None else None,
        pin_root=str(root),
    )


def _now() -> int:
    # the clock of the live update's flip stamp
    return time.clock_gettime_ns(time.CLOCK_BOOTTIME)


@dataclass(frozen=True)
class Timing:
    """How long the daemon took over one apply request, from the request received: to the
    flip of a live update (None for any other apply) and to the reply."""

    to_flip_ms: float | None
    to_reply_ms: float

    @classmethod
    def of(cls, received: int, report: ApplyReport | None, replied: int) -> Timing:
        flipped = report.flipped_at if report is not None else None
        to_flip = None if flipped is None else (flipped - received) / 1e6
        return cls(to_flip, (replied - received) / 1e6)

    def describe(self) -> str:
        flip = "" if self.to_flip_ms is None else f"{self.to_flip_ms:.1f} ms to the flip, "
        return f"{flip}{self.to_reply_ms:.1f} ms to the reply"

    def as_dict(self) -> dict[str, float | None]:
        return {"to_flip_ms": self.to_flip_ms, "to_reply_ms": self.to_reply_ms}


class _Control:
    """The daemon's answers to control requests, and the policy it follows (a request may
    apply another one: the pins are the daemon's state, so it follows what they hold)."""

    def __init__(
        self, root: Path, manifests: ManifestCache, metrics: DaemonMetrics, watched: Path | None
    ) -> None:
        self.root = root
        self.manifests = manifests
        self.policy = ""
        self.ready = threading.Event()
        self.metrics = metrics
        self.watched = watched
        # set after each request: the main loop reconciles and holds the new pins at once
        self.dirty = threading.Event()

    def handle(self, message: dict[str, Any]) -> dict[str, Any]:
        received = _now()
        self.ready.wait()
        if self.watched is not None:
            # only what CI pinned reaches this node: change the watched artifact instead
            return _refusal(f"this node's fw-load run follows {self.watched}; replace it there")
        if not self.policy:
            return _refusal("the fw-load run daemon failed to start; see its log")
        if message.get("command") == "set":
            return self._set(message, received)
        try:
            opts = self._options(message)
        except (KeyError, TypeError, ValueError) as exc:
            return _refusal(f"bad control request: {exc}")
        # anything else it raises is a bug: the control server answers it as a daemon failure
        outcome = apply_report.execute(opts, bool(message.get("json")))
        # what set changes keep may have been replaced: nothing holds it
        set_change.forget()
        self.dirty.set()
        timing = Timing.of(received, outcome.report, _now())
        # RESULTS are in the order of fw-load apply's exit codes
        self.metrics.applied(RESULTS[min(outcome.code, 2)], timing.to_reply_ms / 1e3)
        if outcome.report is not None:
            self.policy = outcome.report.policy
            _say(
                f"applied {outcome.report.policy} ({outcome.report.describe_path()}) on request"
                f"; {timing.describe()}"
            )
        else:
            _say(f"apply request refused: {outcome.stderr.strip().splitlines()[-1]}")
        return {**outcome.as_reply(), "timing": timing.as_dict()}

    def _set(self, message: dict[str, Any], received: int) -> dict[str, Any]:
        """A `fw-load set` request: the same function the command runs, here warm."""
        started = set_report.now()
        try:
            if Path(str(message.get("root"))) != self.root:
                raise ValueError(f"this daemon serves pin root {self.root}")
            fields = message["options"]
            if not isinstance(fields, dict) or set(fields) != set(set_report.FIELDS):
                raise ValueError("the options are not those of this fw-load")
            opts = set_report.options(fields, self.root, self.manifests)
        except (KeyError, TypeError, ValueError) as exc:
            return _refusal(f"bad control request: {exc}")
        opts = replace(opts, received=started)
        outcome = set_report.execute(opts, bool(message.get("json")))
        self.dirty.set()
        done = outcome.changed
        flipped = None if done is None else (done.flipped_at - received) / 1e6
        timing = Timing(flipped, (_now() - received) / 1e6)
        if done is not None:
            _say(
                f"set {done.set} of {done.policy}: +{done.added} -{done.removed} on request; "
                f"{timing.describe()}"
            )
        else:
            _say(f"set request refused: {outcome.stderr.strip().splitlines()[-1]}")
        return {**outcome.as_reply(), "timing": timing.as_dict()}

    def _options(self, message: dict[str, Any]) -> ApplyOptions:
        if message.get("command") != "apply":
            raise ValueError(f"unknown command {message.get('command')!r}")
        if Path(str(message.get("root"))) != self.root:
            raise ValueError(f"this daemon serves pin root {self.root}")
        fields = message["options"]
        if not isinstance(fields, dict) or set(fields) != set(control.FIELDS):
            raise ValueError("the options are not those of this fw-load")
        ssh = message.get("ssh_connection")
        return apply_report.options(
            fields, self.root, ssh if isinstance(ssh, str) else None, self.manifests
        )

    def warm_up(self) -> None:
        """Parse the live manifest now, between requests, rather than in the next one; then
        collect garbage and freeze what survives.

        A request allocates tens of thousands of objects (the new manifest), which now and
        then set off a full collection that walks every kept object (measured 23 ms, once
        in 12 updates, before the flip). Frozen objects are left out of that walk; they are
        still freed by reference counting, and each warm-up unfreezes them first, so a cycle
        among them is collected here.
        """
        with contextlib.suppress(LoaderError):
            self.manifests.read(pins.policy_pins(self.root, self.policy).meta)
        gc.unfreeze()
        gc.collect()
        gc.freeze()


def _open_control(root: Path, state: _Control) -> ControlServer | None:
    """The control socket, listening before the first apply so that a second daemon on this
    pin root fails before it changes anything; without one, `fw-load apply` applies itself."""
    try:
        return ControlServer(str(root), state.handle, state.warm_up)
    except ControlBusy:
        raise
    except LoaderError as exc:
        _say(f"no control socket, fw-load apply will apply in its own process: {exc}")
        return None


def _refusal(message: str) -> dict[str, Any]:
    return apply_report.Outcome(2, "", f"fw-load apply: {message}\n").as_reply()


def run(opts: DaemonOptions) -> int:
    """Apply (or follow --watch), then follow link events until SIGTERM/SIGINT."""
    stop = threading.Event()

    def _stop(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    root = Path(os.path.abspath(opts.apply.root))
    held = Held()
    warm = ManifestCache()
    registry = CollectorRegistry()
    metrics = DaemonMetrics(registry, watch.REASONS)
    probes = health.Health(opts.watch)
    watcher = watch.Watcher(opts.watch) if opts.watch else None
    state = _Control(root, warm, metrics, opts.watch)
    server = _open_control(root, state)
    http = None
    base = replace(opts.apply, root=root, allow_no_interface=True, require_up=False)

    def follow() -> bool:
        """Poll the watched path; whether what the daemon runs or refuses changed."""
        assert watcher is not None
        before = (watcher.digest, watcher.rejection)
        report = watch.follow(
            watcher, lambda path: apply(replace(base, artifact=path)), metrics, probes, _say
        )
        if report is not None:
            state.policy = report.policy
        return (watcher.digest, watcher.rejection) != before

    try:
        # a typo or a port in use ends the daemon here, before it attaches anything
        if opts.metrics_addr:
            http = listener.serve(opts.metrics_addr, registry, probes)
        # subscribe first, so an interface that appears during the apply is not missed
        with netlink.LinkEvents() as events:
            try:
                if watcher is None:
                    started = time.monotonic()
                    report = apply(base)
                    metrics.applied("ok", time.monotonic() - started)
                    state.policy = report.policy
                    _say(_started(report, server))
                else:
                    state.policy = _pinned_policy(root)
                    follow()
            finally:
                state.ready.set()
            registry.register(PolicyCollector(root, lambda: state.policy))
            changed, last, polled = True, 0.0, time.monotonic()
            while not stop.is_set():
                probes.beat()
                if not on_bpffs(root):
                    _say(_UNMOUNTED.format(root=root, policy=state.policy))
                    return 2
                if watcher is not None and time.monotonic() - polled >= watch.POLL_SECONDS:
                    polled = time.monotonic()
                    changed = follow() or changed
                if changed or state.dirty.is_set() or time.monotonic() - last >= _RESYNC_SECONDS:
                    last = time.monotonic()
                    state.dirty.clear()
                    if state.policy:
                        _reconcile_logged(root, state.policy, opts.apply, warm, held, metrics)
                    _readiness(root, state, watcher, probes)
                changed = bool(events.wait(_POLL_SECONDS))
            if state.policy:
                _exit(root, state.policy, opts.detach_on_exit)
    finally:
        # a request waiting for the first apply is refused, not left hanging
        state.ready.set()
        if http is not None:
            http.shutdown()
        if server is not None:
            server.close()
        held.close()
    return 0


def _pinned_policy(root: Path) -> str:
    """The one policy the pin root holds (a restarted daemon keeps following it while the
    watched artifact is refused), else ""."""
    held = [p for p in pins.policies(root) if p.exists()]
    if len(held) != 1:
        return ""
    _say(f"policy {held[0].dir.name} is pinned; following it until the watched artifact applies")
    return held[0].dir.name


def _started(report: ApplyReport, server: ControlServer | None) -> str:
    interfaces = ", ".join(f"{i.name} ({i.mode})" for i in report.interfaces)
    return (
        f"policy {report.policy} ({report.sha256[:12]}) on {interfaces or 'no interface yet'}"
        f"; control socket {server.path if server else 'off'}"
    )


_UNMOUNTED = (
    "FATAL: the pin root {root} is no longer on a BPF filesystem (bpffs unmounted?); its pins "
    "are gone and fw-load never recreates them on a plain filesystem. Policy {policy} stays "
    "attached only while this process holds it: exiting 2 so that the supervisor restarts "
    "fw-load run once bpffs is mounted again; until then the interfaces are UNFILTERED"
)


def _exit(root: Path, policy: str, detach: bool) -> None:
    """Detach (with --detach-on-exit), or say whether the program really stays attached."""
    if detach:
        with pins.locked(root):
            for name, iface in attach.release(root, None, policy):
                _say(f"{iface}: detached policy {name}")
    elif attach.attached_anywhere(root, policy):
        _say("exiting; the program stays attached (fail-closed)")
    else:
        _say(f"exiting; WARNING: policy {policy} is attached to no interface: nothing filters")
