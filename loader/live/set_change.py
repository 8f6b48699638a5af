"""Live set changes (docs/tables.md, "Live set changes"): members of one address set added and
removed in the idle generation's tries, then one flip; no compile, no program load.

Exactness comes first: anything the live tables cannot represent exactly is refused before
the flip, and the live generation is never written.
"""

from __future__ import annotations

import dataclasses
import os
import struct
import time
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

from fwc.artifact import trie as trie_layout
from fwc.artifact.layout import GEN_MAP, generation_base, generation_map, image_stride
from fwc.artifact.manifest import (
    DirtyMap,
    LoaderRecord,
    Manifest,
    SetChange,
    SetEntry,
    SetTrie,
    TrieUse,
)
from fwc.artifact.sets import MEMBER
from fwc.compiler.policy.ir import AddressRange, Family
from fwc.loader import faults
from fwc.loader.errors import LoaderError
from fwc.loader.kernel import array_mmap, libbpf
from fwc.loader.live import digests as table_digests
from fwc.loader.live.mapped_trie import MappedTrie
from fwc.loader.live.members import Change, Members, Shorter
from fwc.loader.live.pinned import replace_meta
from fwc.loader.live.update import wait_for_readers
from fwc.loader.live.views import VIEWS
from fwc.loader.node import pins

_U32 = struct.Struct("<I")
_GRACE_NS = 1_000_000_000
# the key a generation's digest record holds when it is the live one but for the last change
_MARKER = "set_change"
# (policy pin directory, set) -> (meta map id, the live records, their Shorter index), kept by
# a resident daemon from one change to the next
_WARM: dict[tuple[str, str], tuple[int, Members, Shorter]] = {}
_WIDTH = {"4": 32, "6": 128}


class SetRefused(LoaderError):
    """The change cannot be made exactly without a compile; nothing was changed."""


@dataclass(frozen=True)
class SetDelta:
    """Prefixes to add to a set and to remove from it."""

    adds: tuple[AddressRange, ...]
    removes: tuple[AddressRange, ...]


@dataclass(frozen=True)
class SetChanged:
    """What a live set change did, with its phases' wall times in seconds."""

    policy: str
    set: str
    added: int  # prefixes that became members (adding a member is a no-op)
    removed: int
    members: int  # members now
    since_artifact: SetChange  # the set's changes since the artifact was applied
    from_generation: int
    to_generation: int
    caught_up: str  # how the idle generation caught up: "ranges" or "whole"
    flipped_at: int  # CLOCK_BOOTTIME ns of the flip
    timings: dict[str, float]
    manifest: Manifest  # now pinned, and its meta map's id
    meta_id: int


def forget() -> None:
    """Drop what a resident daemon keeps between set changes (after an apply replaced it)."""
    _WARM.clear()
    VIEWS.clear()


def editable(manifest: Manifest, name: str) -> SetEntry:
    """The set `name` of a live policy, when its members can change live; else SetRefused."""
    if manifest.strategy != "tables":
        raise SetRefused(
            f"policy {manifest.policy.name} was compiled with strategy {manifest.strategy}; "
            "set changes need a tables policy: compile and apply instead"
        )
    entry = manifest.set(name)
    if entry is None:
        known = ", ".join(s.name for s in manifest.sets) or "none"
        raise SetRefused(f"policy {manifest.policy.name} has no set {name!r} (sets: {known})")
    if entry.refused:
        raise SetRefused(f"set {name} cannot change live: {entry.refused}")
    return entry


class _Maps:
    """The pinned maps a change opens, closed together."""

    def __init__(self, policy: pins.PolicyPins) -> None:
        self._policy = policy
        self._fds: dict[str, int] = {}

    def __getitem__(self, name: str) -> int:
        if name not in self._fds:
            self._fds[name] = libbpf.obj_get(self._policy.map(name))
        return self._fds[name]

    def close(self) -> None:
        for fd in self._fds.values():
            os.close(fd)
        self._fds.clear()


def change_set(
    root: Path,
    live: Manifest,
    name: str,
    delta: SetDelta,
    received: float | None = None,
    meta_id: int | None = None,
) -> SetChanged:
    """Add and remove members of set `name` of the live policy whose manifest is `live`: the
    idle generation brought up to the live one, the change painted there, one flip, then the
    new manifest. The caller holds the pin-root lock. SetRefused or LoaderError (nothing live
    changed) before the flip.

    `meta_id`, the id of the pinned meta map `live` was read from, is given by a resident
    daemon: it then keeps the set's records and their index between changes (_WARM), valid
    while the pins hold the manifest it pinned."""
    entry = editable(live, name)
    record = live.fw_load
    if record is None:
        raise SetRefused(f"policy {live.policy.name} is not live (no fw-load record)")
    policy = pins.policy_pins(root, live.policy.name)
    maps = _Maps(policy)
    timings: dict[str, float] = {}
    origin = start = time.perf_counter() if received is None else received
    try:
        gen = _U32.unpack(libbpf.map_lookup(maps[GEN_MAP], _U32.pack(0), 4) or bytes(4))[0]
        idle = 1 - gen
        members_map = generation_base(entry.members) or entry.members
        # taken, not read: a change that fails part way leaves nothing kept
        warm = _WARM.pop((str(policy.dir), name), None)
        shorter: Shorter | None = None
        if warm is not None and meta_id is not None and warm[0] == meta_id:
            _, current, shorter = warm
        else:
            current = Members(VIEWS.get(maps[generation_map(members_map, gen)], members_map)[0])
        before = next((c.members for c in record.sets if c.name == name), None)
        if before is None:
            before = current.members()
        try:
            change, records, moved = _planned(current, name, delta, before, shorter)
            members_info = libbpf.map_info(maps[generation_map(members_map, idle)])
            room = members_info.max_entries * image_stride(members_info.value_size)
            if len(records) > room:
                more = len(change.insert)
                raise SetRefused(f"set {name}'s member map has no room for {more} more")
        except SetRefused:
            if warm is not None and shorter is not None:
                _WARM[str(policy.dir), name] = warm  # nothing changed: it still holds
            raise
        timings["plan"] = time.perf_counter() - start
        start = time.perf_counter()
        if time.clock_gettime_ns(time.CLOCK_BOOTTIME) - (record.flipped_at or 0) < _GRACE_NS:
            wait_for_readers()  # packets that started on the idle generation are done
        digests = table_digests.open_or_pin(policy.map(table_digests.MAP_NAME))
        try:
            behind = _marked(table_digests.read(digests, idle), record)
            # unknown from now on: the idle generation will hold no artifact's seeds
            table_digests.write(digests, idle, {})
            _catch_up(maps, live, record, gen, idle, behind)
            timings["catch_up"] = time.perf_counter() - start
            start = time.perf_counter()
            uses, dirty = _paint(maps, live, record, entry, idle, change.removed, change.added)
            # the idle records are the live ones: only those from the first moved one change
            first, end = moved * MEMBER.size, max(len(records), current.count * MEMBER.size)
            view = VIEWS.get(maps[generation_map(members_map, idle)], members_map)[0]
            view[first : len(records)] = memoryview(records)[first:]
            view[len(records) : end] = bytes(end - len(records))
            dirty[members_map] = (first, end)
            timings["write_idle"] = time.perf_counter() - start
            faults.point("set:idle-written")
            start = time.perf_counter()
            libbpf.map_update(maps[GEN_MAP], _U32.pack(0), _U32.pack(idle))
            flipped_at = time.clock_gettime_ns(time.CLOCK_BOOTTIME)
            timings["flip"] = time.perf_counter() - start
            # the figure the goal is stated in: from the request received to the flip
            timings["to_flip"] = time.perf_counter() - origin
            faults.point("set:flipped")
            # the generation now idle holds the live one but for what this change wrote
            known = table_digests.read(digests, gen)
            known[_MARKER] = [str(record.set_changes + 1)]
            table_digests.write(digests, gen, known)
        finally:
            os.close(digests)
    finally:
        VIEWS.keep_used()
        maps.close()
    start = time.perf_counter()
    members = before + len(change.added) - len(change.removed)
    since = _since(record, name, len(change.added), len(change.removed), members)
    new_record = dataclasses.replace(
        record,
        generation=idle,
        flipped_at=flipped_at,
        sets=(*tuple(c for c in record.sets if c.name != name), since),
        tries=uses,
        set_changes=record.set_changes + 1,
        dirty=tuple(DirtyMap(m, r) for m, r in sorted(dirty.items())),
    )
    pinned = dataclasses.replace(live, fw_load=new_record)
    new_meta_id = replace_meta(root, policy, pinned)
    if meta_id is not None:
        # for the next change: the records as the live member map now holds them
        if shorter is None:
            shorter = Shorter(records, len(records) // MEMBER.size)
        else:
            shorter.change(current, change)
        _WARM.clear()
        _WARM[str(policy.dir), name] = (new_meta_id, Members(records), shorter)
    timings["manifest"] = time.perf_counter() - start
    return SetChanged(
        live.policy.name,
        name,
        len(change.added),
        len(change.removed),
        members,
        since,
        gen,
        idle,
        "ranges" if behind else "whole",
        flipped_at,
        timings,
        pinned,
        new_meta_id,
    )


def _planned(
    current: Members, name: str, delta: SetDelta, members: int, shorter: Shorter | None
) -> tuple[Change, bytes, int]:
    both = set(delta.adds) & set(delta.removes)
    if both:
        raise SetRefused(f"{min(both, key=str)} is both added to and removed from set {name}")
    change = current.change(delta.adds, delta.removes, shorter)
    if change.missing:
        raise SetRefused(f"{change.missing[0]} is not a member of set {name}")
    for at, prefix in zip(change.delete, change.removed, strict=True):
        if current.overlapped(prefix, at, shorter):
            raise SetRefused(
                f"{prefix} overlaps another member of set {name} or an address its rules list "
                "beside it; removing it exactly needs a compile"
            )
    if members + len(change.added) - len(change.removed) == 0:
        raise SetRefused(f"set {name} would be empty; a rule naming only it would match anything")
    return change, *current.apply(change)


def _marked(idle: table_digests.Digests, record: LoaderRecord) -> bool:
    """Whether the idle generation holds the live one but for what the last set change wrote
    (`record.dirty`): that change marked it so right after its flip."""
    return record.set_changes > 0 and idle.get(_MARKER) == [str(record.set_changes)]


def _catch_up(
    maps: _Maps, live: Manifest, record: LoaderRecord, gen: int, idle: int, behind: bool
) -> None:
    """Make the idle generation hold what the live one holds: when it is `behind` by the last
    set change only, the byte ranges that change wrote; otherwise (after an apply, a program
    load, or a change that failed) every table, where its 64 KiB blocks differ."""
    if behind:
        for dirty in record.dirty:
            source = VIEWS.get(maps[generation_map(dirty.map, gen)], dirty.map)[0]
            target = VIEWS.get(maps[generation_map(dirty.map, idle)], dirty.map)[0]
            for start, end in zip(dirty.ranges[::2], dirty.ranges[1::2], strict=True):
                target[start:end] = source[start:end]
        return
    bases = [b for s in live.seeds if (b := generation_base(s.map)) is not None]
    for base in bases:
        from_fd, to_fd = maps[generation_map(base, gen)], maps[generation_map(base, idle)]
        info = libbpf.map_info(to_fd)
        if array_mmap.mmapable(info):
            array_mmap.copy(from_fd, to_fd, info)
            continue
        ks, vs = info.key_size, info.value_size
        stale, _ = libbpf.map_items(to_fd, ks, vs)
        libbpf.map_delete_batch(to_fd, stale, len(stale) // ks)
        keys, values = libbpf.map_items(from_fd, ks, vs)
        if keys:
            libbpf.map_update_batch(to_fd, keys, values, len(keys) // ks)


def _paint(
    maps: _Maps,
    live: Manifest,
    record: LoaderRecord,
    entry: SetEntry,
    idle: int,
    removed: Sequence[AddressRange],
    added: Sequence[AddressRange],
) -> tuple[tuple[TrieUse, ...], dict[str, tuple[int, ...]]]:
    """Removals, then additions, painted into the idle tries; the tries' use after them, and
    the byte ranges written per table."""
    uses = {u.table: u for u in record.tries}
    with ExitStack() as stack:
        opened: dict[str, MappedTrie] = {}

        def trie(table: str) -> MappedTrie:
            if table not in opened:
                use = uses.get(table) or _seeded_use(live, table)
                opened[table] = stack.enter_context(
                    MappedTrie(
                        table,
                        _WIDTH[table[1]],
                        VIEWS.get(maps[generation_map(f"fwc_{table}_", idle)], table),
                        VIEWS.get(maps[generation_map(f"fwc_{table}k_", idle)], table),
                        use.slots,
                        use.skips,
                    )
                )
            return opened[table]

        for prefixes, side in ((removed, "remove"), (added, "add")):
            for t in entry.tries:
                moved = _mover(entry.name, t, side)
                family = Family.IPV4 if t.table.endswith("4") else Family.IPV6
                for prefix in prefixes:
                    if prefix.family is not family:
                        continue
                    try:
                        trie_layout.paint(trie(t.table), prefix.network, prefix.prefix_len, moved)
                    except trie_layout.TrieFull as exc:
                        raise SetRefused(f"{exc}; this change needs a compile") from exc
        dirty: dict[str, tuple[int, ...]] = {}
        for table, mapped in opened.items():
            uses[table] = TrieUse(table, mapped.slots, mapped.skips)
            dirty[f"fwc_{table}_"], dirty[f"fwc_{table}k_"] = mapped.written()
    return tuple(uses[t] for t in sorted(uses)), dirty


def _mover(name: str, trie: SetTrie, side: str) -> Callable[[int], int]:
    table = trie.add if side == "add" else trie.remove

    def moved(cls: int) -> int:
        target = table[cls] if 0 <= cls < len(table) else -1
        if target < 0:
            raise SetRefused(
                f"set {name}: an address of class {cls} in trie {trie.table} would need a "
                f"class the live tables do not have ({side}); this change needs a compile"
            )
        return target

    return moved


def _seeded_use(live: Manifest, table: str) -> TrieUse:
    """A trie's use as the artifact seeded it."""
    counts = {s.map: s.count for s in live.seeds}
    return TrieUse(table, counts[f"fwc_{table}_0"], counts[f"fwc_{table}k_0"])


def _since(record: LoaderRecord, name: str, added: int, removed: int, members: int) -> SetChange:
    before = next((c for c in record.sets if c.name == name), None)
    if before is None:
        return SetChange(name, added, removed, members)
    return SetChange(name, before.added + added, before.removed + removed, members)
