"""The apply transaction: load, check, pin under staging, swap every interface, then commit.

Any failure before the first swap leaves the old state untouched; a failure during the swaps
puts the interfaces already swapped back on the old program.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import os
import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fwc.artifact.ifclass import IFACES_HASH_MAP, IFACES_MAP
from fwc.artifact.layout import BUCKETS_MAP
from fwc.artifact.manifest import Manifest
from fwc.loader import faults
from fwc.loader.apply import lockout, recovery
from fwc.loader.apply.manifest_cache import ManifestCache
from fwc.loader.errors import LoaderError
from fwc.loader.kernel import libbpf
from fwc.loader.kernel.meta import create_meta_map, read_meta_map
from fwc.loader.kernel.program import LoadedProgram, drain, possible_cpus
from fwc.loader.live import digests as table_digests
from fwc.loader.live import update as live_update
from fwc.loader.live.compat import can_update_in_place
from fwc.loader.live.pinned import initial_record, meta_manifest
from fwc.loader.node import attach, ctprobe, cttable, ifclasses, netlink, pins
from fwc.loader.node.bpffs import require_bpffs
from fwc.loader.node.netlink import Interface
from fwc.loader.reader.artifact import ArtifactSpec, check_map_definitions, read_artifact

_CAP_NET_ADMIN, _CAP_SYS_ADMIN = 12, 21
PRIVILEGES = "needs root (or CAP_SYS_ADMIN and CAP_NET_ADMIN); run it with sudo"
_COUNTER_STRIDE = 16
_KEY = struct.Struct("<I")


class LockoutRefused(LoaderError):
    """The new program would drop the management session (exit 1, not a tool error)."""


@dataclass(frozen=True)
class ApplyOptions:
    artifact: Path
    root: Path
    expect_hash: str | None = None
    force: bool = False
    keep_access: tuple[str, ...] = ()
    ssh_connection: str | None = None
    offload: bool = False
    replace_foreign: bool = False
    dry_run: bool = False
    # apply needs at least one interface; the daemon starts with none and waits
    allow_no_interface: bool = False
    require_up: bool = True
    # write the new tables beside the live ones and flip, when the artifact allows it
    live_update: bool = True
    # the daemon's parsed live manifests, kept between its requests
    manifests: ManifestCache | None = None
    # where the kernel says whether it can track connections (tests point it elsewhere)
    host: ctprobe.Host = field(default_factory=ctprobe.Host)


@dataclass(frozen=True)
class InterfaceResult:
    name: str
    action: str  # attached | replaced | replaced-foreign | detached
    mode: str | None


@dataclass(frozen=True)
class ApplyReport:
    policy: str
    sha256: str  # the artifact's identity: sha256 of its file
    prog_id: int
    dry_run: bool
    interfaces: tuple[InterfaceResult, ...]
    lockout_checked: tuple[str, ...] = ()
    path: str = "program-swap"  # or "live-update"
    reason: str = ""  # why the live update was not possible
    generations: tuple[int, int] | None = None  # (from, to) of a live update
    flipped_at: int | None = None  # CLOCK_BOOTTIME ns of a live update's flip
    source_sha256: str = ""  # of the policy source the artifact was compiled from
    recovered: tuple[str, ...] = ()  # what recovery from a killed fw-load did first
    conntrack: str = ""  # what became of the policy's conntrack table, when it has or had one

    def describe_path(self) -> str:
        if self.generations is not None:
            return f"live-update: generation {self.generations[0]} -> {self.generations[1]}"
        return f"program swap ({self.reason})" if self.reason else "program swap"

    def as_dict(self) -> dict[str, Any]:
        update: dict[str, Any] = {"path": self.path, "summary": self.describe_path()}
        if self.generations is not None:
            update["from_generation"], update["to_generation"] = self.generations
            update["flipped_at_boottime_ns"] = self.flipped_at
        else:
            update["reason"] = self.reason
        return {
            "policy": self.policy,
            "sha256": self.sha256,
            "source_sha256": self.source_sha256,
            "prog_id": self.prog_id,
            "dry_run": self.dry_run,
            "update": update,
            "interfaces": [vars(i) for i in self.interfaces],
            "lockout_checked": list(self.lockout_checked),
            "recovered": list(self.recovered),
            "conntrack": self.conntrack,
        }


@dataclass(frozen=True)
class _Step:
    """What the transaction does on one interface."""

    iface: Interface
    action: str  # attach | replace | replace-foreign
    holder: attach.Holder | None = None


@dataclass
class _Undo:
    """Everything done to interfaces so far, newest last, for the rollback."""

    actions: list[Callable[[], None]] = field(default_factory=list)

    def rollback(self) -> None:
        for action in reversed(self.actions):
            try:
                action()
            except LoaderError:
                continue


def check_privileges() -> None:
    """Raise unless this process may load BPF programs, find them by id and change links.

    Measured on 6.x: CAP_BPF alone loads no fwc program (the verifier wants CAP_PERFMON for
    pointer arithmetic), and BPF_PROG_GET_FD_BY_ID, which the program swap, its rollback and
    the crash recovery use, wants CAP_SYS_ADMIN, which implies CAP_BPF and CAP_PERFMON.
    """
    caps = 0
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("CapEff:"):
                caps = int(line.split()[1], 16)
    except OSError:
        caps = (1 << 64) - 1 if os.geteuid() == 0 else 0
    if not (caps & (1 << _CAP_SYS_ADMIN) and caps & (1 << _CAP_NET_ADMIN)):
        raise LoaderError(PRIVILEGES)


def prepare(opts: ApplyOptions) -> ArtifactSpec:
    """Read the artifact and check what needs no kernel: hash and dry-run."""
    # libbpf's reading of the map definitions waits for the program-swap path, which needs it
    spec = read_artifact(opts.artifact, map_definitions=False)
    # the identity is the whole file's sha256: program, maps, manifest and tables together
    if opts.expect_hash and opts.expect_hash.strip().lower() != spec.sha256:
        raise LoaderError(
            f"{opts.artifact}: artifact sha256 {spec.sha256} is not the expected "
            f"{opts.expect_hash.strip().lower()}; refusing an artifact CI did not approve"
        )
    if opts.dry_run and not spec.manifest.dry_run:
        raise LoaderError(
            f"{opts.artifact} is not a dry-run artifact; build one with "
            "`fwc compile --dry-run` (the dry-run switch is compiled into the program)"
        )
    return spec


def refuse_unless_trackable(spec: ArtifactSpec, host: ctprobe.Host) -> None:
    """Raise unless this kernel can give the artifact's state rules their connection state."""
    if not cttable.needed(spec.manifest):
        return
    reason = ctprobe.refusal(host)
    if reason:
        raise LoaderError(
            f"{spec.path}: policy {spec.policy_name} has rules with `state`, but {reason}; "
            "refusing to attach a program that could not see connection states"
        )


class _StateTable:
    """The policy's conntrack table across the transaction: made before any interface runs
    the new program, removed again when the apply fails after making it, and removed when
    the new artifact has no state rules."""

    def __init__(self, spec: ArtifactSpec, nft: str, had: bool) -> None:
        self._policy = spec.policy_name
        self._wanted = cttable.needed(spec.manifest)
        self._had = had  # the applied generation has state rules (or may have)
        self._nft = nft
        self._made = False

    def prepare(self) -> None:
        if self._wanted:
            self._made = not cttable.exists(self._policy, self._nft)
            cttable.ensure(self._policy, self._nft)

    def rollback(self) -> None:
        if self._made:
            try:
                cttable.delete(self._policy, self._nft)
            except LoaderError:
                return

    def commit(self) -> str:
        """What the report says of the table."""
        what = f"{cttable.describe(self._policy)}"
        if self._wanted:
            return f"{what} {'created' if self._made else 'kept'}"
        if self._had and cttable.forget(self._policy, self._nft):
            return f"{what} deleted (no rule has state now)"
        return ""


def _plan(
    opts: ApplyOptions, spec: ArtifactSpec, interfaces: list[Interface]
) -> tuple[list[_Step], list[tuple[Interface, attach.Holder]]]:
    """Per selected interface, how to put the new program there; and what to detach after."""
    include = list(spec.manifest.policy.interfaces.include)
    exclude = list(spec.manifest.policy.interfaces.exclude)
    selected = netlink.select_interfaces(interfaces, include, exclude, opts.require_up)
    if not selected and not opts.allow_no_interface:
        raise LoaderError(
            f"no interface matches policy {spec.policy_name!r} "
            f"(include {include or 'every non-loopback interface that is up'}, "
            f"exclude {exclude})"
        )
    held = attach.holders(opts.root, interfaces)
    steps: list[_Step] = []
    for iface in selected:
        holder = held.get(iface.index)
        if holder is not None:
            steps.append(_Step(iface, "replace", holder))
        elif iface.xdp_prog_id:
            if not opts.replace_foreign:
                raise LoaderError(
                    f"interface {iface.name} runs XDP program id {iface.xdp_prog_id} that "
                    "fw-load did not attach; pass --replace-foreign to replace it"
                )
            steps.append(_Step(iface, "replace-foreign"))
        else:
            steps.append(_Step(iface, "attach"))
    chosen = {i.index for i in selected}
    final = pins.policy_pins(opts.root, spec.policy_name)
    by_index = {i.index: i for i in interfaces}
    leave = [
        (by_index[index], holder)
        for index, holder in held.items()
        if holder.policy.dir == final.dir and index not in chosen
    ]
    return steps, leave


def _limited(spec: ArtifactSpec, program: LoadedProgram) -> Callable[[], bool] | None:
    """Whether the last probe frame took a rate limit's token (the program's own buckets,
    not yet pinned, hold nothing else)."""
    if not any(m.name == BUCKETS_MAP for m in spec.maps):
        return None
    fd = program.map_fd(BUCKETS_MAP)
    return lambda: drain(fd)


def _sessions(opts: ApplyOptions, steps: list[_Step]) -> list[lockout.Session]:
    sessions: list[lockout.Session] = []
    if opts.ssh_connection:
        session = lockout.from_ssh_connection(opts.ssh_connection)
        if session is not None:
            sessions.append(session)
    if opts.keep_access:
        local = [
            ipaddress.ip_address(a.split("%", 1)[0])
            for a in netlink.addresses(s.iface.index for s in steps)
        ]
        for spec in opts.keep_access:
            sessions.extend(lockout.from_keep_access(spec, local))
    return sessions


def _ingress(steps: list[_Step]) -> Callable[[lockout.Session], list[int]]:
    """Where a session's packets arrive, for a policy whose rules name interfaces: the
    interfaces that hold its local address, else every interface the policy takes."""
    local = {
        s.iface.index: {
            ipaddress.ip_address(a.split("%", 1)[0]) for a in netlink.addresses([s.iface.index])
        }
        for s in steps
    }

    def where(session: lockout.Session) -> list[int]:
        holding = [index for index, addresses in local.items() if session.server in addresses]
        return holding or list(local) or [0]

    return where


class _CounterCarry:
    """Carries per-CPU counts of slots that keep their name from the old counters map: copied
    before the swap, then what the old program counted meanwhile is added after it."""

    def __init__(self, spec: ArtifactSpec, program: LoadedProgram, old: pins.PolicyPins) -> None:
        self._pairs: list[tuple[int, int]] = []
        self._old_fd = -1
        self._new_fd = program.map_fd(spec.counters_map)
        self._size = _COUNTER_STRIDE * possible_cpus()
        self._copied: dict[int, bytes] = {}
        try:
            old_manifest = read_meta_map(old.meta)
            old_slots = {name: index for index, name in old_manifest.counters.slots.pairs()}
            self._old_fd = libbpf.obj_get(old.map(old_manifest.counters.map))
        except LoaderError:
            return
        self._pairs = [(old_slots[n], i) for i, n in spec.counter_slots if n in old_slots]

    def _read(self, fd: int, index: int) -> bytes:
        return libbpf.map_lookup(fd, _KEY.pack(index), self._size) or bytes(self._size)

    def copy(self) -> None:
        for old_index, new_index in self._pairs:
            value = self._read(self._old_fd, old_index)
            self._copied[old_index] = value
            libbpf.map_update(self._new_fd, _KEY.pack(new_index), value)

    def add_late_counts(self) -> None:
        # a small race remains: the new program may count on a slot between read and write
        fields = self._size // 8
        layout = struct.Struct(f"<{fields}Q")
        for old_index, new_index in self._pairs:
            now = layout.unpack(self._read(self._old_fd, old_index))
            before = layout.unpack(self._copied[old_index])
            if now == before:
                continue
            current = layout.unpack(self._read(self._new_fd, new_index))
            total = [c + n - b for c, n, b in zip(current, now, before, strict=True)]
            libbpf.map_update(self._new_fd, _KEY.pack(new_index), layout.pack(*total))

    def close(self) -> None:
        if self._old_fd >= 0:
            os.close(self._old_fd)
            self._old_fd = -1


def _pin(spec: ArtifactSpec, program: LoadedProgram, staging: pins.PolicyPins) -> None:
    staging.make_dirs()
    program.pin(staging.dir)
    meta = meta_manifest(spec.manifest, initial_record(spec))
    meta_fd = create_meta_map(meta)
    try:
        libbpf.obj_pin(meta_fd, staging.meta)
    finally:
        os.close(meta_fd)
    if spec.seeds:
        digest_fd = table_digests.create(table_digests.seed_digests(spec))
        try:
            libbpf.obj_pin(digest_fd, staging.map(table_digests.MAP_NAME))
        finally:
            os.close(digest_fd)


def _swap(
    opts: ApplyOptions,
    program: LoadedProgram,
    steps: list[_Step],
    staging: pins.PolicyPins,
    undo: _Undo,
) -> tuple[list[InterfaceResult], dict[str, Path]]:
    """Put the new program on every interface; return results and the link pins to keep."""
    results: list[InterfaceResult] = []
    links: dict[str, Path] = {}
    for step in steps:
        iface, holder = step.iface, step.holder
        if step.action == "attach":
            mode = attach.attach_pinned(
                program.prog_fd, iface, opts.offload, staging.link(iface.name)
            )
            undo.actions.append(_unlink(staging.link(iface.name)))
            results.append(InterfaceResult(iface.name, "attached", mode))
        elif step.action == "replace" and holder is not None and holder.link_pin is not None:
            attach.swap_link(holder.link_pin, program.prog_fd, holder.prog_id)
            faults.point("swap:link-swapped")
            undo.actions.append(_relink(holder.link_pin, holder.prog_id, program.prog_fd))
            links[iface.name] = holder.link_pin
            results.append(InterfaceResult(iface.name, "replaced", iface.xdp_mode))
        elif step.action == "replace" and holder is not None:
            attach.swap_netlink(iface, program.prog_fd, holder.prog_id)
            undo.actions.append(_renetlink(iface, holder.prog_id, program.prog_id))
            results.append(InterfaceResult(iface.name, "replaced", iface.xdp_mode))
        else:
            attach.swap_netlink(iface, program.prog_fd, iface.xdp_prog_id)
            undo.actions.append(_renetlink(iface, iface.xdp_prog_id, program.prog_id))
            results.append(InterfaceResult(iface.name, "replaced-foreign", iface.xdp_mode))
    return results, links


def _unlink(link_pin: Path) -> Callable[[], None]:
    return lambda: attach.detach_link(link_pin)


def _relink(link_pin: Path, old_prog_id: int, new_prog_fd: int) -> Callable[[], None]:
    def undo() -> None:
        old_fd = libbpf.prog_get_fd_by_id(old_prog_id)
        try:
            new_id = libbpf.prog_info(new_prog_fd).id
            attach.swap_link(link_pin, old_fd, new_id)
        finally:
            os.close(old_fd)

    return undo


def _renetlink(iface: Interface, old_prog_id: int, new_prog_id: int) -> Callable[[], None]:
    def undo() -> None:
        old_fd = libbpf.prog_get_fd_by_id(old_prog_id)
        try:
            attach.swap_netlink(iface, old_fd, new_prog_id)
        finally:
            os.close(old_fd)

    return undo


def _forget_empty_policies(root: Path, keep: pins.PolicyPins, nft: str) -> None:
    """Remove other policies' pins once none of their programs is attached anywhere."""
    interfaces = netlink.list_interfaces()
    attached = {i.xdp_prog_id for i in interfaces}
    for policy in pins.own_policies(root):
        if policy.dir == keep.dir or policy.linked_interfaces():
            continue
        if attach.pinned_prog_id(policy) not in attached:
            had = cttable.had_table(policy)
            pins.remove_tree(policy.dir)
            if had:
                cttable.forget(policy.dir.name, nft)


def apply(opts: ApplyOptions) -> ApplyReport:
    """Run the whole transaction; raise LoaderError (or LockoutRefused) with nothing changed."""
    check_privileges()
    require_bpffs(opts.root)
    spec = prepare(opts)
    refuse_unless_trackable(spec, opts.host)
    try:
        with pins.locked(opts.root):
            return _apply_locked(opts, spec)
    except OSError as exc:
        raise LoaderError(f"{exc.filename or opts.root}: {exc.strerror or exc}") from exc


def _live_candidate(
    opts: ApplyOptions,
    spec: ArtifactSpec,
    final: pins.PolicyPins,
    steps: list[_Step],
    leave: list[tuple[Interface, attach.Holder]],
) -> tuple[Manifest | None, str]:
    """The live manifest when the new artifact can be applied in place; else None and why not."""
    if not opts.live_update:
        return None, "--no-live-update"
    if not final.exists():
        return None, f"policy {spec.policy_name} is not applied yet"
    if leave or any(s.holder is None or s.holder.policy.dir != final.dir for s in steps):
        return None, "the interfaces it is attached to change"
    try:
        manifest = opts.manifests.read(final.meta) if opts.manifests else read_meta_map(final.meta)
    except LoaderError as exc:
        return None, f"the live manifest cannot be read: {exc}"
    possible, reason = can_update_in_place(manifest, spec)
    return (manifest, "") if possible else (None, reason)


def _apply_live(
    opts: ApplyOptions,
    spec: ArtifactSpec,
    final: pins.PolicyPins,
    steps: list[_Step],
    manifest: Manifest,
) -> ApplyReport:
    sessions = _sessions(opts, steps)

    def check(probe: live_update.Probe) -> None:
        limited = None if probe.buckets_fd < 0 else (lambda: drain(probe.buckets_fd))
        if spec.manifest.interface_classes is not None:
            blocked = lockout.blocked_on(sessions, probe.verdict_on, _ingress(steps), limited)
        else:
            blocked = lockout.blocked(sessions, probe.verdict, limited)
        if blocked and not opts.force:
            raise LockoutRefused(lockout.refusal(blocked))

    done = live_update.update_in_place(opts.root, manifest, spec, check if sessions else None)
    if opts.manifests is not None:
        # the next request finds the manifest it would otherwise parse again (1 MB at 10k rules)
        opts.manifests.keep(final.meta, done.meta_id, done.manifest)
    return ApplyReport(
        policy=spec.policy_name,
        sha256=spec.sha256,
        source_sha256=spec.source_sha256,
        prog_id=attach.pinned_prog_id(final),
        dry_run=spec.manifest.dry_run,
        interfaces=tuple(
            InterfaceResult(s.iface.name, "live-updated", s.iface.xdp_mode) for s in steps
        ),
        lockout_checked=tuple(s.describe() for s in sessions),
        path="live-update",
        generations=(done.from_generation, done.to_generation),
        flipped_at=done.flipped_at,
    )


def _apply_locked(opts: ApplyOptions, spec: ArtifactSpec) -> ApplyReport:
    # recovery and the live-update check read the same manifest: parse it once
    if opts.manifests is None:
        opts = dataclasses.replace(opts, manifests=ManifestCache())
    recovered = tuple(recovery.recover(opts.root, opts.manifests))
    return dataclasses.replace(_apply_recovered(opts, spec), recovered=recovered)


def _apply_recovered(opts: ApplyOptions, spec: ArtifactSpec) -> ApplyReport:
    final = pins.policy_pins(opts.root, spec.policy_name)
    attach.claim(final)
    interfaces = netlink.list_interfaces()
    steps, leave = _plan(opts, spec, interfaces)
    read = opts.manifests.read if opts.manifests is not None else read_meta_map
    table = _StateTable(spec, opts.host.nft, cttable.had_table(final, read))
    try:
        table.prepare()
        report = _apply_planned(opts, spec, final, interfaces, steps, leave)
    except BaseException:
        table.rollback()
        raise
    return dataclasses.replace(report, conntrack=table.commit())


def _apply_planned(
    opts: ApplyOptions,
    spec: ArtifactSpec,
    final: pins.PolicyPins,
    interfaces: list[Interface],
    steps: list[_Step],
    leave: list[tuple[Interface, attach.Holder]],
) -> ApplyReport:
    live_manifest, reason = _live_candidate(opts, spec, final, steps, leave)
    if live_manifest is not None:
        return _apply_live(opts, spec, final, steps, live_manifest)
    check_map_definitions(spec)
    with LoadedProgram.from_spec(spec) as program:
        table = spec.manifest.interface_classes
        if table is not None:
            # before any interface runs the program: an unknown ifindex matches no pattern
            maps = program.map_fd(IFACES_MAP), program.map_fd(IFACES_HASH_MAP)
            ifclasses.sync(*maps, table, interfaces)
        sessions = _sessions(opts, steps)
        if table is not None:
            blocked = lockout.blocked_on(
                sessions,
                lambda frame, ifindex: program.test_run(frame, ingress_ifindex=ifindex).retval,
                _ingress(steps),
                _limited(spec, program),
            )
        else:
            blocked = lockout.blocked(
                sessions, lambda frame: program.test_run(frame).retval, _limited(spec, program)
            )
        if blocked and not opts.force:
            raise LockoutRefused(lockout.refusal(blocked))
        carry = _CounterCarry(spec, program, final) if final.exists() else None
        if carry is not None:
            carry.copy()
        staging = pins.staging_pins(opts.root, spec.policy_name)
        undo = _Undo()
        try:
            _pin(spec, program, staging)
            faults.point("swap:pinned")
            results, links = _swap(opts, program, steps, staging, undo)
        except BaseException:
            undo.rollback()
            pins.remove_tree(staging.dir)
            if carry is not None:
                carry.close()
            raise
        if carry is not None:
            carry.add_late_counts()
            carry.close()
        faults.point("swap:counts-added")
        for name, pin in links.items():
            target = staging.link(name)
            if pin != target:
                pin.rename(target)
        faults.point("swap:links-moved")
        for iface, holder in leave:
            attach.detach(iface, holder)
            results.append(InterfaceResult(iface.name, "detached", None))
        faults.point("swap:detached")
        pins.commit(staging, final)
        faults.point("swap:committed")
        _forget_empty_policies(opts.root, final, opts.host.nft)
        return ApplyReport(
            policy=spec.policy_name,
            sha256=spec.sha256,
            source_sha256=spec.source_sha256,
            prog_id=program.prog_id,
            dry_run=spec.manifest.dry_run,
            interfaces=tuple(results),
            lockout_checked=tuple(s.describe() for s in sessions),
            reason=reason,
        )
