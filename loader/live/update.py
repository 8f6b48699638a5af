"""Live update of a pinned tables policy (docs/tables.md): fill the idle generation, flip one index.

No program is swapped; `can_update_in_place` says whether a new artifact allows it, and why not.
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
import time
from array import array
from bisect import bisect_left
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fwc.loader.errors import LoaderError
from fwc.loader.kernel import array_mmap, libbpf
from fwc.loader.kernel.meta import create_meta_map
from fwc.loader.kernel.program import COUNTER, possible_cpus
from fwc.loader.kernel.records import join_records, split_records
from fwc.loader.live import digests as table_digests
from fwc.loader.live import hash_shadow
from fwc.loader.node import pins
from fwc.loader.reader import elf
from fwc.loader.reader.artifact import ArtifactSpec, Buffer, SeedSpec

# fw-load's own record in the pinned manifest (the artifact's manifest has no such key)
RECORD = "fw_load"
GEN_MAP = "fwc_gen"
KEYED = ("hash", "lpm_trie")
# an update within this long after the previous flip waits for an RCU grace period first
_GRACE_NS = 1_000_000_000
_U32 = struct.Struct("<I")
_RULE = struct.Struct("<III")  # key: rule id; value: XDP action, counter slot
# an fwc_rule image holds (action, slot) per element, 8 bytes with no padding
_RULE_IMAGE_SLOTS = slice(1, None, 2)
_CFG_SLOTS = slice(2, 6)  # default, malformed, non_ip, would_drop in the cfg value's u32 fields


class LiveUpdateError(LoaderError):
    """The live update failed before the flip: the live generation is untouched."""


@dataclass(frozen=True)
class LiveUpdate:
    """What an update in place did, with its phases' wall times in seconds."""

    from_generation: int
    to_generation: int
    records: int  # records written into the idle generation
    timings: dict[str, float] = field(default_factory=dict)
    flipped_at: int = 0  # CLOCK_BOOTTIME ns of the flip
    # the manifest now pinned, as read_meta_fd would parse it, and its meta map's id
    manifest: Mapping[str, Any] = field(default_factory=dict)
    meta_id: int = 0


def program_sha256(data: bytes, section: str) -> str:
    """Digest of the program: its section's bytes and every relocation (offset, symbol name)."""
    try:
        obj = elf.ElfFile(data)
        program = obj.by_name.get(section)
        if program is None:
            raise LoaderError(f"{section!r}: no such section")
        digest = hashlib.sha256(obj.section_data(program))
        rel = obj.by_name.get(f".rel{section}")
        if rel is not None and rel.type == elf.SHT_REL:
            if not 0 <= rel.link < len(obj.sections):
                raise LoaderError(f"relocations of {section!r} name no symbol table")
            symbols = obj.symbols(obj.sections[rel.link])
            for offset, index in obj.relocations(rel):
                if index >= len(symbols):
                    raise LoaderError(f"a relocation of {section!r} names no symbol")
                name = symbols[index].name
                digest.update(offset.to_bytes(8, "little") + name.encode() + b"\0")
    except elf.ElfError as exc:
        raise LoaderError(f"{section!r}: {exc}") from exc
    return digest.hexdigest()


def meta_manifest(manifest: Mapping[str, Any], record: Mapping[str, Any]) -> bytes:
    """The manifest fw-load pins: the artifact's, plus fw-load's record, canonically encoded."""
    return _encode({**manifest, RECORD: dict(record)})


def _encode(pinned: Mapping[str, Any]) -> bytes:
    return json.dumps(pinned, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def initial_record(spec: ArtifactSpec) -> dict[str, Any]:
    """fw-load's record for a freshly loaded artifact: its program digest, generation 0 live."""
    return {"program_sha256": program_sha256(spec.data, spec.section), "generation": 0}


def _idle_name(seed_map: str, generation: int) -> str | None:
    return seed_map[:-1] + str(generation) if seed_map.endswith("0") else None


def can_update_in_place(
    live_manifest: Mapping[str, Any], new_spec: ArtifactSpec
) -> tuple[bool, str]:
    """Whether `new_spec` can replace the live tables without a reload; else why not."""
    new = new_spec.manifest
    for label, strategy in (("live", live_manifest.get("strategy")), ("new", new["strategy"])):
        if strategy != "tables":
            return False, f"the {label} policy uses strategy {strategy!r}, not 'tables'"
    if bool(live_manifest.get("dry_run")) != bool(new.get("dry_run")):
        return False, "the dry-run switch differs (it is compiled into the program)"
    live_digest = (live_manifest.get(RECORD) or {}).get("program_sha256")
    if not live_digest:
        return False, "the live manifest records no program digest (applied by an older fw-load)"
    if program_sha256(new_spec.data, new_spec.section) != live_digest:
        return False, "the program differs from the live one"
    live_maps = {m["name"]: m for m in live_manifest.get("maps", [])}
    new_maps = {m.name: m for m in new_spec.maps}
    if set(live_maps) != set(new_maps):
        changed = sorted(set(live_maps) ^ set(new_maps))
        return False, f"the maps differ ({', '.join(changed)})"
    for name, spec in new_maps.items():
        live = live_maps[name]
        shape = (live["type"], live["key_size"], live["value_size"])
        if shape != (spec.type, spec.key_size, spec.value_size):
            return False, f"map {name} changes its type, key or value size"
    for seed in new_spec.seeds:
        for generation in (0, 1):
            target = _idle_name(seed.map, generation)
            if target is None or target not in live_maps:
                return False, f"seed of map {seed.map} is not a generation-0 table"
            if seed.count > live_maps[target]["max_entries"]:
                return False, (
                    f"map {target} holds {live_maps[target]['max_entries']} entries, "
                    f"the new policy needs {seed.count}"
                )
    counters = live_manifest.get("counters", {}).get("map")
    if counters != new_spec.counters_map:
        return False, "the counters map differs"
    have = live_maps[counters]["max_entries"]
    if len(new_spec.counter_slots) > have:
        return False, (
            f"the counters map would grow from {have} to {len(new_spec.counter_slots)} slots"
        )
    return True, ""


def slot_mapping(
    live_manifest: Mapping[str, Any], spec: ArtifactSpec, entries: int
) -> tuple[dict[int, int] | None, list[int]]:
    """New slot index -> live slot index (same name, else a free slot), or None when every
    slot keeps its index (the same names in the same slots); and the reused slots."""
    slots = live_manifest["counters"]["slots"]
    new = spec.manifest["counters"]["slots"]
    if slots["index"] == new["index"] and slots["name"] == new["name"]:
        # an edit that keeps the rule names: two list compares at C speed
        return None, []
    # built by a C-level zip: per-item Python comprehensions cost ms at 10,000 rules
    live = dict(zip(slots["name"], slots["index"], strict=True))
    mapping = {index: live[name] for index, name in spec.counter_slots if name in live}
    unmapped = [index for index, _ in spec.counter_slots if index not in mapping]
    # the lowest free slots, in slot order: set arithmetic, not a Python loop per slot
    fresh = sorted(set(range(entries)).difference(mapping.values()))[: len(unmapped)]
    if len(fresh) < len(unmapped):
        raise LiveUpdateError(f"the counters map has no free slot left ({entries} slots)")
    mapping.update(zip(unmapped, fresh, strict=True))
    return mapping, fresh


def _remap(seed: SeedSpec, mapping: dict[int, int] | None) -> Buffer:
    """The seed's records with counter slots moved to the live counters' slots."""
    if mapping is None:
        return seed.records
    base = seed.map[:-1]

    if base == "fwc_rule":
        out = bytearray(seed.records)
        # the slot is the third u32 of each (key, action, slot) record: one column, remapped
        words = memoryview(out).cast("I")
        slots = array("I", map(mapping.__getitem__, words[2 :: _RULE.size // 4]))
        words[2 :: _RULE.size // 4] = memoryview(slots)
        return out
    if base == "fwc_cfg":
        fields = list(struct.unpack(f"<{len(seed.records) // 4}I", seed.records))
        # the record is the u32 key 0, then the cfg value
        value = fields[1:]
        value[_CFG_SLOTS] = [mapping[s] for s in value[_CFG_SLOTS]]
        return struct.pack(f"<{len(fields)}I", fields[0], *value)
    return seed.records


def _remap_image(image: memoryview, map_name: str, mapping: dict[int, int] | None) -> bytes:
    """An image seed with counter slots moved to the live counters' slots."""
    base = map_name[:-1]
    if mapping is None or base not in ("fwc_rule", "fwc_cfg"):
        return bytes(image)
    out = bytearray(image)
    words = memoryview(out).cast("I")
    column = _RULE_IMAGE_SLOTS if base == "fwc_rule" else _CFG_SLOTS
    words[column] = memoryview(array("I", map(mapping.__getitem__, words[column])))
    return bytes(out)


class _Seen:
    """Seeds this process wrote or matched, by whole-seed digest: a seed equal to the bytes
    the idle generation is recorded to hold is found by one memory compare, not a digest.

    Only bytes whose digest was computed from them are kept, so a hit vouches exactly as an
    equal digest would. A warm `fw-load run` reuses them from one request to the next.
    """

    def __init__(self) -> None:
        self._by_digest: dict[str, bytes] = {}

    def held(self, known: list[str]) -> bytes | None:
        """The records the idle generation holds, when its one whole-seed digest is kept."""
        return self._by_digest.get(known[0]) if len(known) == 1 else None

    def add(self, digest: str, records: bytes) -> None:
        self._by_digest[digest] = records

    def prune(self, digests: set[str]) -> None:
        """Forget what neither generation of the policy just updated holds."""
        self._by_digest = {d: b for d, b in self._by_digest.items() if d in digests}


_SEEN = _Seen()


@dataclass(frozen=True)
class _Pending:
    """A whole-seed digest still to compute: after the flip, before it is recorded."""

    records: bytes

    def digest(self) -> str:
        return _MMAP_DIGEST + hashlib.sha256(self.records).hexdigest()


def _write_array(
    fd: int, info: libbpf.MapInfo, seed: SeedSpec, records: Buffer, known: list[str]
) -> tuple[list[str] | _Pending, int]:
    """Write an array seed: through mmap when the map allows it, else the changed chunks by
    batch. Returns the digests of what the map now holds (or the bytes to digest after the
    flip) and how many records were written."""
    if array_mmap.mmapable(info) and seed.key_size == array_mmap.KEY_SIZE:
        # against the records the idle generation is known to hold: one memory compare, and
        # only the blocks that differ are rewritten (a process that has not seen them pays
        # one digest instead); any other seed is compared with the map's real contents. The
        # digest of what was written waits until after the flip.
        data = records if isinstance(records, bytes) else bytes(records)
        if _unchanged(data, known):
            return known, 0
        held = _SEEN.held(known)
        if held is not None:
            patched = array_mmap.patch(fd, info, held, data, seed.value_size)
            if patched is not None:
                return _Pending(data), patched.elements
        want = array_mmap.image(data, seed.value_size, info.max_entries)
        if want is not None:
            return _Pending(data), array_mmap.write(fd, info, want).elements
    step = seed.key_size + seed.value_size
    digests = table_digests.chunk_digests(records, step)
    size = table_digests.CHUNK * step
    changed = b"".join(
        records[i * size : (i + 1) * size]
        for i, digest in enumerate(digests)
        if i >= len(known) or known[i] != digest
    )
    if changed:
        keys, values = split_records(changed, seed.key_size, seed.value_size)
        libbpf.map_update_batch(fd, keys, values, len(changed) // step)
    return digests, len(changed) // step


def _write_image(
    fd: int, info: libbpf.MapInfo, image: bytes, known: list[str]
) -> tuple[list[str] | _Pending, int]:
    """Write an image seed (the artifact holds the array's memory): nothing when the idle
    generation is known to hold it, else the 64 KiB blocks that differ from the map."""
    if _unchanged(image, known):
        return known, 0
    return _Pending(image), array_mmap.write(fd, info, image).elements


def _unchanged(data: bytes, known: list[str]) -> bool:
    """Whether the idle generation is recorded to hold exactly `data` (an mmap-written seed):
    one memory compare with the bytes this process kept, or, when it has not seen them, one
    digest (then kept)."""
    held = _SEEN.held(known)
    if held is not None:
        return held == data
    if len(known) == 1 and known[0].startswith(_MMAP_DIGEST):
        whole = _Pending(data).digest()
        if known == [whole]:
            _SEEN.add(whole, data)
            return True
    return False


def _write_hash(
    fd: int, seed: SeedSpec, records: Buffer, known: list[str], shadow: hash_shadow.Shadow
) -> tuple[list[str], int]:
    """Make a hash map hold exactly `records`: the changed key intervals deleted, then
    written (`hash_changes`). The old contents come from the shadow when the digests vouch
    for it, else from the map; either way they name only keys the map holds, as a batch
    delete requires (a shadow that lied fails the delete, before the flip)."""
    ks, vs = seed.key_size, seed.value_size
    digests = table_digests.chunk_digests(records, ks + vs)
    old: Buffer = shadow.records()
    if not known or table_digests.chunk_digests(old, ks + vs) != known:
        old = join_records(*libbpf.map_items(fd, ks, vs), ks, vs)
    elif digests == known:
        return digests, 0
    stale, fresh = hash_changes(old, records, ks, vs)
    libbpf.map_delete_batch(fd, stale, len(stale) // ks)
    if fresh:
        keys, values = split_records(fresh, ks, vs)
        libbpf.map_update_batch(fd, keys, values, len(keys) // ks)
    shadow.store(records)
    return digests, len(fresh) // (ks + vs)


_WORD = {1: "B", 2: "H", 4: "I", 8: "Q"}
_DIFF_BLOCK = 64  # new records per interval of the key space compared at once
# marks a whole-seed digest (mmap path) apart from a list of chunk digests (batch path)
_MMAP_DIGEST = "whole:"


def hash_changes(old: Buffer, new: Buffer, key_size: int, value_size: int) -> tuple[bytes, bytes]:
    """What turns a hash holding the `old` records into one holding the `new`: (packed keys
    to delete, records to write).

    Only the key intervals where old and new differ are touched, and each of them is replaced
    whole: its old keys deleted, its new records written. Finding the records that really
    changed inside an interval costs more in Python than rewriting the interval costs in the
    kernel (about a microsecond per record either way, and an edit's intervals are mostly
    changed: its groups' combos are renumbered).
    """
    old, new = _changed_intervals(old, new, key_size, value_size)
    return _pack_keys(_key_column(old, key_size, value_size), key_size), bytes(new)


def _pack_keys(keys: Sequence[Any], size: int) -> bytes:
    return array(_WORD[size], keys).tobytes() if size in _WORD else b"".join(keys)


def _sorted_keys(records: Buffer, key_size: int, value_size: int) -> Sequence[int] | None:
    """The records' keys as integers when they are machine words in ascending order."""
    if key_size not in _WORD:
        return None
    column = _key_column(records, key_size, value_size)
    as_list = list(column)
    return column if as_list == sorted(as_list) else None


def _changed_intervals(
    old: Buffer, new: Buffer, key_size: int, value_size: int
) -> tuple[Buffer, Buffer]:
    """The old and new records of the key intervals where they differ (both whole when the
    keys are not sorted). Intervals start at every _DIFF_BLOCK-th new key, so they split
    both sides at the same keys and a diff of the parts is the diff of the wholes."""
    old_keys = _sorted_keys(old, key_size, value_size)
    new_keys = _sorted_keys(new, key_size, value_size)
    if old_keys is None or new_keys is None:
        return old, new
    step = key_size + value_size
    old_bytes, new_bytes = bytes(old), bytes(new)
    cuts = [
        (bisect_left(old_keys, new_keys[n]), n)
        for n in range(_DIFF_BLOCK, len(new_keys), _DIFF_BLOCK)
    ]
    cuts.append((len(old_keys), len(new_keys)))
    old_parts: list[bytes] = []
    new_parts: list[bytes] = []
    start_old = start_new = 0
    for end_old, end_new in cuts:
        before = old_bytes[start_old * step : end_old * step]
        after = new_bytes[start_new * step : end_new * step]
        if before != after:
            old_parts.append(before)
            new_parts.append(after)
        start_old, start_new = end_old, end_new
    return b"".join(old_parts), b"".join(new_parts)


def _column(buf: Buffer, size: int) -> Sequence[Any]:
    """Fixed-size items of `buf`: machine words when they fit one (a C-speed split), else bytes."""
    if size in _WORD:
        column = array(_WORD[size])
        column.frombytes(buf)
        return column
    return [bytes(buf[i : i + size]) for i in range(0, len(buf), size)]


def _key_column(records: Buffer, key_size: int, value_size: int) -> Sequence[Any]:
    keys, _ = split_records(records, key_size, value_size)
    return _column(keys, key_size)


def _wait_for_readers() -> None:
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
            fd = table_digests.open_pinned(pin)
            if fd is None:
                fd = table_digests.create({})
                try:
                    libbpf.obj_pin(fd, pin)
                except LoaderError:
                    os.close(fd)
                    raise
            self._fds[table_digests.MAP_NAME] = fd
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


@contextmanager
def idle_probe(policy: pins.PolicyPins, spec: ArtifactSpec, generation: int) -> Iterator[Verdict]:
    """The new program over the pinned tables, reading `generation`, with counters of its own.

    It classifies test frames with the idle generation before anything live reads it.
    """
    obj = libbpf.Object(spec.data)
    try:
        for m in spec.maps:
            if m.name in (GEN_MAP, spec.counters_map):
                continue
            fd = libbpf.obj_get(policy.map(m.name))
            try:
                obj.reuse_map_fd(m.name, fd)
            finally:
                os.close(fd)
        obj.load()
        libbpf.map_update(obj.map_fd(GEN_MAP), _U32.pack(0), _U32.pack(generation))
        prog_fd = obj.program_fd(spec.program)
        yield lambda frame: libbpf.prog_test_run(prog_fd, frame)[0]
    finally:
        obj.close()


def update_in_place(
    root: os.PathLike[str] | str,
    live_manifest: Mapping[str, Any],
    spec: ArtifactSpec,
    before_flip: Callable[[Verdict], None] | None = None,
) -> LiveUpdate:
    """docs/tables.md "Live update": idle generation, counters by name, flip, new manifest.

    `before_flip` gets the idle generation's verdicts (the lockout check) and may raise to stop.
    Raises LiveUpdateError (nothing live changed) when anything fails before the flip.
    """
    policy = pins.policy_pins(Path(root), spec.policy_name)
    live_maps = {m["name"]: m for m in live_manifest["maps"]}
    record = dict(live_manifest.get(RECORD) or {})
    fds = _Fds(policy)
    timings: dict[str, float] = {}
    try:
        start = time.perf_counter()
        try:
            raw = libbpf.map_lookup(fds[GEN_MAP], _U32.pack(0), 4)
            live = _U32.unpack(raw or bytes(4))[0]
            idle = 1 - live
            since = time.clock_gettime_ns(time.CLOCK_BOOTTIME) - int(record.get("flipped_at", 0))
            if since < _GRACE_NS:
                # packets that started on the idle generation before the last flip must be done
                _wait_for_readers()
            counters = spec.counters_map
            entries = int(live_maps[counters]["max_entries"])
            mapping, fresh = slot_mapping(live_manifest, spec, entries)
            digest_fd = fds.digests()
            known = table_digests.read(digest_fd, idle)
            # unknown until the writes below are done: a failure leaves it so
            table_digests.write(digest_fd, idle, {})
            written: dict[str, list[str] | _Pending] = {}
            timings["prepare"] = time.perf_counter() - start
            start = time.perf_counter()
            records = 0
            for seed in spec.seeds:
                target = f"{seed.map[:-1]}{idle}"
                info = libbpf.map_info(fds[target])
                if info.max_entries < seed.count:
                    raise LiveUpdateError(
                        f"pinned map {target} holds {info.max_entries} entries, "
                        f"the new policy needs {seed.count}"
                    )
                if (info.key_size, info.value_size) != (seed.key_size, seed.value_size):
                    raise LiveUpdateError(f"pinned map {target} has other key or value sizes")
                seed_known = known.get(seed.map, [])
                tracked: list[str] | _Pending
                if seed.image is not None and array_mmap.mmapable(info):
                    image = _remap_image(seed.image, seed.map, mapping)
                    tracked, count = _write_image(fds[target], info, image, seed_known)
                    written[seed.map] = tracked
                    records += count
                    continue
                records_in = _remap(seed, mapping)
                if live_maps[target]["type"] in KEYED:
                    shadow = fds.shadow(target, seed, info.max_entries)
                    tracked, count = _write_hash(fds[target], seed, records_in, seed_known, shadow)
                else:
                    tracked, count = _write_array(fds[target], info, seed, records_in, seed_known)
                written[seed.map] = tracked
                records += count
            if fresh:
                # one batch call: a policy of new names has thousands of fresh slots
                zeros = bytes(COUNTER.size * possible_cpus() * len(fresh))
                libbpf.map_update_batch(fds[counters], _pack_keys(fresh, 4), zeros, len(fresh))
            timings["write_idle"] = time.perf_counter() - start
        except LiveUpdateError:
            raise
        except LoaderError as exc:
            raise LiveUpdateError(f"live update failed before the flip: {exc}") from exc
        if before_flip is not None:
            start = time.perf_counter()
            with idle_probe(policy, spec, idle) as verdict:
                before_flip(verdict)
            timings["check"] = time.perf_counter() - start
        start = time.perf_counter()
        # one 4-byte store: every packet classifies with one whole generation
        libbpf.map_update(fds[GEN_MAP], _U32.pack(0), _U32.pack(idle))
        flipped_at = time.clock_gettime_ns(time.CLOCK_BOOTTIME)
        timings["flip"] = time.perf_counter() - start
        # what only the next update needs: digests of what was written, still before the
        # record of the idle generation (unknown until now) says what it holds
        start = time.perf_counter()
        now_held = _resolve(written)
        table_digests.write(digest_fd, idle, now_held)
        _SEEN.prune(_wholes(table_digests.read(digest_fd, live)) | _wholes(now_held))
        timings["digests"] = time.perf_counter() - start
    finally:
        fds.close()
    start = time.perf_counter()
    record.update(generation=idle, flipped_at=flipped_at)
    pinned = _live_manifest(spec, live_manifest, mapping)
    pinned[RECORD] = record
    meta_id = _replace_meta(Path(root), policy, pinned)
    timings["manifest"] = time.perf_counter() - start
    return LiveUpdate(live, idle, records, timings, flipped_at, pinned, meta_id)


def _resolve(written: Mapping[str, list[str] | _Pending]) -> table_digests.Digests:
    """The digests of what each seed map now holds, computing the pending ones (kept too)."""
    out: table_digests.Digests = {}
    for name, tracked in written.items():
        if isinstance(tracked, _Pending):
            digest = tracked.digest()
            _SEEN.add(digest, tracked.records)
            tracked = [digest]
        out[name] = tracked
    return out


def _wholes(digests: Mapping[str, Any]) -> set[str]:
    return {d[0] for d in digests.values() if isinstance(d, list) and len(d) == 1}


def _live_manifest(
    spec: ArtifactSpec, live_manifest: Mapping[str, Any], mapping: dict[int, int] | None
) -> dict[str, Any]:
    """The new manifest as the kernel now holds it: the live maps, and slots where they count."""
    manifest = dict(spec.manifest)
    manifest["maps"] = list(live_manifest["maps"])
    if mapping is not None:
        slots = manifest["counters"]["slots"]
        manifest["counters"] = {
            **manifest["counters"],
            "slots": {
                "index": list(map(mapping.__getitem__, slots["index"])),
                "name": list(slots["name"]),
            },
        }
    return manifest


def _replace_meta(root: Path, policy: pins.PolicyPins, pinned: dict[str, Any]) -> int:
    """Pin a new frozen meta map holding `pinned` (the manifest with fw-load's record) in
    staging, then rename it over the policy's (atomic on bpffs); its map id."""
    staging = pins.staging_pins(root, policy.dir.name)
    staging.dir.mkdir(parents=True, exist_ok=True)
    try:
        fd = create_meta_map(_encode(pinned))
        try:
            meta_id = libbpf.map_info(fd).id
            libbpf.obj_pin(fd, staging.meta)
        finally:
            os.close(fd)
        os.rename(staging.meta, policy.meta)
    finally:
        pins.remove_tree(staging.dir)
    return meta_id
