"""Live update of a pinned tables policy (docs/tables.md): fill the idle generation, flip one index.

No program is swapped; `compat.can_update_in_place` says whether a new artifact allows it.
"""

from __future__ import annotations

import dataclasses
import os
import struct
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from fwc.artifact.layout import BUCKETS_MAP, COUNTER, GEN_MAP, generation_base, generation_map
from fwc.artifact.manifest import LoaderRecord, Manifest, MapEntry
from fwc.loader import faults
from fwc.loader.errors import LoaderError
from fwc.loader.kernel import array_mmap, libbpf
from fwc.loader.kernel.program import possible_cpus
from fwc.loader.live import digests as table_digests
from fwc.loader.live import hash_shadow
from fwc.loader.live.errors import LiveUpdateError
from fwc.loader.live.hash_diff import pack_keys
from fwc.loader.live.pinned import after_update, replace_meta
from fwc.loader.live.remap import remap_image, remap_records
from fwc.loader.live.seen import SEEN, Pending, resolve, wholes
from fwc.loader.live.slots import slot_mapping
from fwc.loader.live.writers import write_array, write_hash, write_image
from fwc.loader.node import pins
from fwc.loader.reader.artifact import ArtifactSpec
from fwc.loader.reader.seeds import SeedSpec

KEYED = ("hash", "lpm_trie")
# an update within this long after the previous flip waits for an RCU grace period first
_GRACE_NS = 1_000_000_000
_U32 = struct.Struct("<I")


@dataclass(frozen=True)
class LiveUpdate:
    """What an update in place did, with its phases' wall times in seconds."""

    from_generation: int
    to_generation: int
    records: int  # records written into the idle generation
    timings: dict[str, float]
    flipped_at: int  # CLOCK_BOOTTIME ns of the flip
    # the manifest now pinned, as read_meta_fd would decode it, and its meta map's id
    manifest: Manifest
    meta_id: int


def wait_for_readers() -> None:
    """Force an RCU grace period: updating a map-in-map element from user space waits for one."""
    inner = libbpf.map_create(libbpf.BPF_MAP_TYPE_ARRAY, "fwc_rcu_in", 4, 4, 1)
    try:
        outer = libbpf.map_create(
            libbpf.BPF_MAP_TYPE_ARRAY_OF_MAPS, "fwc_rcu", 4, 4, 1, inner_map_fd=inner
        )
        try:
            libbpf.map_update(outer, _U32.pack(0), _U32.pack(inner))
        finally:
            os.close(outer)
    finally:
        os.close(inner)


class _Fds:
    """The pinned maps an update touches, opened once and closed together."""

    def __init__(self, policy: pins.PolicyPins) -> None:
        self._policy = policy
        self._fds: dict[str, int] = {}
        self._shadows: list[hash_shadow.Shadow] = []

    def __getitem__(self, name: str) -> int:
        if name not in self._fds:
            self._fds[name] = libbpf.obj_get(self._policy.map(name))
        return self._fds[name]

    def digests(self) -> int:
        """The policy's digest map; a policy pinned without one gets one (nothing known)."""
        if table_digests.MAP_NAME not in self._fds:
            pin = self._policy.map(table_digests.MAP_NAME)
            self._fds[table_digests.MAP_NAME] = table_digests.open_or_pin(pin)
        return self._fds[table_digests.MAP_NAME]

    def shadow(self, target: str, seed: SeedSpec, entries: int) -> hash_shadow.Shadow:
        """The shadow of hash map `target`, created (empty) when missing or of another size."""
        pin = self._policy.map(hash_shadow.pin_name(target))
        shadow = hash_shadow.Shadow(pin, seed.key_size + seed.value_size, entries)
        self._shadows.append(shadow)
        return shadow

    def close(self) -> None:
        for fd in self._fds.values():
            os.close(fd)
        self._fds.clear()
        for shadow in self._shadows:
            shadow.close()
        self._shadows.clear()


Verdict = Callable[[bytes], int]


@dataclass(frozen=True)
class Probe:
    """The XDP action of a test frame, and the probe's own rate-limit buckets (-1: none)."""

    verdict: Verdict
    buckets_fd: int
    verdict_on: Callable[[bytes, int], int]  # the action of a frame arriving on an ifindex


@contextmanager
def idle_probe(policy: pins.PolicyPins, spec: ArtifactSpec, generation: int) -> Iterator[Probe]:
    """The new program over the pinned tables, reading `generation`, with counters and
    rate-limit buckets of its own (a probe takes no live tokens, and its own show which
    frames a rate limit decided).

    It classifies test frames with the idle generation before anything live reads it.
    """
    obj = libbpf.Object(spec.data)
    try:
        names = {m.name for m in spec.maps}
        for m in spec.maps:
            if m.name in (GEN_MAP, BUCKETS_MAP, spec.counters_map):
                continue
            fd = libbpf.obj_get(policy.map(m.name))
            try:
                obj.reuse_map_fd(m.name, fd)
            finally:
                os.close(fd)
        obj.load()
        libbpf.map_update(obj.map_fd(GEN_MAP), _U32.pack(0), _U32.pack(generation))
        prog_fd = obj.program_fd(spec.program)
        buckets = obj.map_fd(BUCKETS_MAP) if BUCKETS_MAP in names else -1
        yield Probe(
            lambda frame: libbpf.prog_test_run(prog_fd, frame)[0],
            buckets,
            lambda frame, ifindex: libbpf.prog_test_run(prog_fd, frame, ingress_ifindex=ifindex)[0],
        )
    finally:
        obj.close()


@dataclass
class _Idle:
    """The idle generation being filled: what each seed map now holds, and records written."""

    generation: int
    known: table_digests.Digests
    written: dict[str, list[str] | Pending] = field(default_factory=dict)
    records: int = 0


def update_in_place(
    root: os.PathLike[str] | str,
    live_manifest: Manifest,
    spec: ArtifactSpec,
    before_flip: Callable[[Probe], None] | None = None,
) -> LiveUpdate:
    """docs/tables.md "Live update": idle generation, counters by name, flip, new manifest.

    `before_flip` gets the idle generation's verdicts (the lockout check) and may raise to stop.
    Raises LiveUpdateError (nothing live changed) when anything fails before the flip.
    """
    policy = pins.policy_pins(Path(root), spec.policy_name)
    record = live_manifest.fw_load or LoaderRecord()
    fds = _Fds(policy)
    timings: dict[str, float] = {}
    try:
        start = time.perf_counter()
        try:
            live = _U32.unpack(libbpf.map_lookup(fds[GEN_MAP], _U32.pack(0), 4) or bytes(4))[0]
            since = time.clock_gettime_ns(time.CLOCK_BOOTTIME) - (record.flipped_at or 0)
            if since < _GRACE_NS:
                # packets that started on the idle generation before the last flip must be done
                wait_for_readers()
            entries = _live_map(live_manifest, spec.counters_map).max_entries
            mapping, fresh = slot_mapping(live_manifest, spec, entries)
            digest_fd = fds.digests()
            idle = _Idle(1 - live, table_digests.read(digest_fd, 1 - live))
            # unknown until the writes below are done: a failure leaves it so
            table_digests.write(digest_fd, idle.generation, {})
            timings["prepare"] = time.perf_counter() - start
            start = time.perf_counter()
            for seed in spec.seeds:
                _write_seed(fds, live_manifest, seed, mapping, idle)
            if fresh:
                # one batch call: a policy of new names has thousands of fresh slots
                zeros = bytes(COUNTER.size * possible_cpus() * len(fresh))
                fd = fds[spec.counters_map]
                libbpf.map_update_batch(fd, pack_keys(fresh, 4), zeros, len(fresh))
            timings["write_idle"] = time.perf_counter() - start
            faults.point("live:idle-written")
        except LiveUpdateError:
            raise
        except LoaderError as exc:
            raise LiveUpdateError(f"live update failed before the flip: {exc}") from exc
        if before_flip is not None:
            start = time.perf_counter()
            with idle_probe(policy, spec, idle.generation) as probe:
                before_flip(probe)
            timings["check"] = time.perf_counter() - start
        start = time.perf_counter()
        # one 4-byte store: every packet classifies with one whole generation
        libbpf.map_update(fds[GEN_MAP], _U32.pack(0), _U32.pack(idle.generation))
        flipped_at = time.clock_gettime_ns(time.CLOCK_BOOTTIME)
        timings["flip"] = time.perf_counter() - start
        faults.point("live:flipped")
        # what only the next update needs: digests of what was written, still before the
        # record of the idle generation (unknown until now) says what it holds
        start = time.perf_counter()
        now_held = resolve(idle.written)
        table_digests.write(digest_fd, idle.generation, now_held)
        SEEN.prune(wholes(table_digests.read(digest_fd, live)) | wholes(now_held))
        timings["digests"] = time.perf_counter() - start
        faults.point("live:digests")
    finally:
        fds.close()
    start = time.perf_counter()
    # the new artifact's seeds replace any live set changes, in both generations' record
    record = dataclasses.replace(
        record,
        generation=idle.generation,
        flipped_at=flipped_at,
        artifact_sha256=spec.sha256,
        sets=(),
        tries=(),
        set_changes=0,
        dirty=(),
    )
    pinned = after_update(spec, live_manifest, mapping, record)
    meta_id = replace_meta(Path(root), policy, pinned)
    timings["manifest"] = time.perf_counter() - start
    return LiveUpdate(live, idle.generation, idle.records, timings, flipped_at, pinned, meta_id)


def _live_map(live_manifest: Manifest, name: str) -> MapEntry:
    found = live_manifest.map(name)
    if found is None:
        raise LiveUpdateError(f"the live manifest lists no map {name}")
    return found


def _write_seed(
    fds: _Fds,
    live_manifest: Manifest,
    seed: SeedSpec,
    mapping: dict[int, int] | None,
    idle: _Idle,
) -> None:
    """Write one seed into its idle-generation map, recording what the map now holds."""
    base = generation_base(seed.map)
    if base is None:
        raise LiveUpdateError(f"seed of map {seed.map} is not a generation-0 table")
    target = generation_map(base, idle.generation)
    fd = fds[target]
    info = libbpf.map_info(fd)
    if info.max_entries < seed.count:
        raise LiveUpdateError(
            f"pinned map {target} holds {info.max_entries} entries, "
            f"the new policy needs {seed.count}"
        )
    if (info.key_size, info.value_size) != (seed.key_size, seed.value_size):
        raise LiveUpdateError(f"pinned map {target} has other key or value sizes")
    known = idle.known.get(seed.map, [])
    tracked: list[str] | Pending
    if seed.image is not None and array_mmap.mmapable(info):
        # the artifact holds the array's memory: it goes to the map as it is, no records
        image = remap_image(seed.image, seed.map, mapping)
        tracked, count = write_image(fd, info, image, known)
    elif _live_map(live_manifest, target).type in KEYED:
        shadow = fds.shadow(target, seed, info.max_entries)
        tracked, count = write_hash(fd, seed, remap_records(seed, mapping), known, shadow)
    else:
        tracked, count = write_array(fd, info, seed, remap_records(seed, mapping), known)
    idle.written[seed.map] = tracked
    idle.records += count
