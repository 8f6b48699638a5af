"""The tables strategy: a fixed XDP program whose rules live in map seeds (docs/tables.md)."""

from __future__ import annotations

import bisect
import dataclasses
import struct
import sys
from array import array
from collections.abc import Mapping, Sequence, Set
from dataclasses import dataclass
from typing import ClassVar

from fwc.artifact import sets as live_sets
from fwc.artifact import trie as trie_layout
from fwc.artifact.ifclass import IFACES_ENTRIES, IFACES_HASH_ENTRIES
from fwc.artifact.layout import (
    CFG_HEADER,
    IMAGE,
    IMAGE_KEY_SIZE,
    RULE_VALUE,
    generation_map,
    image_stride,
)
from fwc.artifact.manifest import SetEntry, SetTrie
from fwc.artifact.trie import DIR_ROOT, DIR_ROOT_BITS, SKIP_RECORD, U64_MASK
from fwc.compiler.backend.options import DEFAULT_OPTIONS, CompileOptions
from fwc.compiler.backend.plan import (
    MapInfo,
    Plan,
    PlanError,
    Seed,
    counter_slots,
    interface_maps,
    planned_interfaces,
    program_name,
    special_slots,
)
from fwc.compiler.backend.tables.classify import (
    CT_ROWS,
    DPORT,
    DST,
    FIELDS,
    L4,
    L4_KEYS,
    MAX_GROUPS,
    PORTS,
    SPORT,
    SRC,
    AddressEntry,
    Tables,
    TablesTooLarge,
    build_tables,
    field_mask,
)
from fwc.compiler.policy.findings import Finding, Location, error
from fwc.compiler.policy.interfaces import InterfaceClasses
from fwc.compiler.policy.ir import Action, Family, Policy, Rule

TEMPLATE = "tables.c.j2"
GENERATIONS = (0, 1)
XDP_DROP = 1
XDP_PASS = 2
_XDP = {Action.ALLOW: XDP_PASS, Action.DENY: XDP_DROP}
# Hash and trie maps are sized in powers of two from this floor, so a policy that grows a
# little still fits the live maps and can be updated without a reload.
MIN_CAPACITY = 1024
# The fields the program may skip when no group's signature holds them (the L4 field is always
# looked up: interfaces and connection state index it), and their names in classify.FIELDS.
_SKIPPABLE = (SRC, DST, SPORT, DPORT)
LOOKUP_FIELDS = tuple(FIELDS[f] for f in _SKIPPABLE)
# The tables of each skippable field, by the stem their maps share (fwc_s4_G, fwc_s4cG, ...;
# fwc_spG, fwc_spcG).
_TABLE_FIELD = {
    "s4": "src",
    "s6": "src",
    "d4": "dst",
    "d6": "dst",
    "sp": "sport",
    "dp": "dport",
}

# Room for live set changes above what the compiled members use (docs/tables.md, "Live set
# changes"): member records and skip records, and trie chunks (counted in units), each plus a
# sixteenth of those used, before the maps' power-of-two rounding.
SET_ROOM = 4096
SET_ROOM_CHUNKS = 1024

# Record layouts, little-endian like the BPF target.
# cfg: ngroups, default action, 4 counter slots, array_size, bucket_mask, then per group the
# linear-index layout next to each other (one group's reads share cache lines): base, mult[5],
# first rule (docs/tables.md).
CFG_GROUP = f"{1 + len(FIELDS)}QI4x"
CFG = struct.Struct(CFG_HEADER.format + CFG_GROUP * MAX_GROUPS)
# Addresses walk a multibit trie stored in one array (leaf-pushed): 65,536 root slots for
# the top 16 bits, then chunks of 2^stride slots: 8-bit strides down to bit WIDE_UNTIL (IPv4:
# at most 3 loads; IPv6: the pools and /48s in 4 levels), 4-bit strides below it, where 256-slot
# chunks along sparse long prefixes would cost tens of MB. A slot holds an address class, or
# CHUNK | p, the chunk at DIR_ROOT + p << UNIT.
WIDE_UNTIL = {Family.IPV4: 32, Family.IPV6: 48}
UNIT = {f: trie_layout.unit(f.width) for f in Family}
# Per-field class records: the field's candidate-group mask (classify.field_mask), then the
# class per group.
ADDR_VALUE = struct.Struct(f"<I{MAX_GROUPS}I")
CLASSES16 = struct.Struct(f"<I{MAX_GROUPS}H")
U64 = struct.Struct("<Q")
# Combo indexes above the dense array live in buckets of an array map, probed with inlined loads
# (a BPF hash lookup cost about 38 ns; docs/tables.md). A bucket holds BUCKET_SLOTS indexes and
# their values (rule id + 1, 0 for an empty slot) and a flag: some index that hashes here did not
# fit, so a miss must still ask the hash map (fwc_comb).
BUCKET_SLOTS = 4
BUCKET = struct.Struct(f"<{BUCKET_SLOTS}Q{BUCKET_SLOTS}II4x")
# Fibonacci hashing: the high half of index * 2^64/phi, masked to the bucket count.
HASH_MULT = 0x9E3779B97F4A7C15
MIN_BUCKETS = MIN_CAPACITY
RULE = RULE_VALUE
# per rule id, the rule's CT_STATES bits (0: it names none); only in programs with state rules
CT_TABLE = "fwc_cts"
U32 = struct.Struct("<I")
U16 = struct.Struct("<H")


@dataclass(frozen=True)
class TablesProgram:
    """The variables of tables.c.j2: sizes, and which fields the program looks up; the rules
    are in the seeds."""

    template: ClassVar[str] = TEMPLATE
    program_name: str
    policy_name: str
    dry_run: bool
    slot_count: int
    slot_would_drop: int
    groups: int
    l4_keys: int
    ports: Mapping[str, int]  # per port field ("sport", "dport"): port -> class
    port_classes: Mapping[str, int]  # per port field: its class records
    rule_capacity: int
    combo_capacity: int
    array_capacity: int
    bucket_count: int
    bucket_slots: int
    hash_mult: int
    fields: int
    dir_entries: Mapping[str, int]  # per address table ("s4", "s6", "d4", "d6")
    dir_classes: Mapping[str, int]
    dir_skips: Mapping[str, int]
    dir_root: int
    v6_wide: int
    v6_levels: int
    v6_unit: int
    generations: tuple[int, ...] = GENERATIONS
    iface_classes: int = 0  # interface classes the L4 table is indexed by; 0: no lookup
    iface_entries: int = 0
    iface_hash_entries: int = IFACES_HASH_ENTRIES
    l4_keys_per_class: int = L4_KEYS
    conntrack: bool = False  # a rule has `state`: fwc_ct.h, fwc_cts and the second pass
    ct_block: int = 0  # L4 rows of one connection-state block (l4_keys / CT_ROWS)
    set_maps: Mapping[str, int] = dataclasses.field(
        default_factory=dict
    )  # member map base -> entries
    # the address and port fields some group's signature holds, which the program looks up
    # (docs/tables.md, "Fields no rule constrains"); the L4 field is always looked up
    lookups: tuple[str, ...] = LOOKUP_FIELDS


def looked_up(tables: Tables) -> tuple[str, ...]:
    """The fields of LOOKUP_FIELDS that some group's signature holds. Every class record of a
    field outside every signature has the candidate mask of all groups and weighs 0 in every
    combo index, so the program need not look it up."""
    return tuple(
        FIELDS[f] for f in _SKIPPABLE if any(signature >> f & 1 for signature in tables.signatures)
    )


def findings(policy: Policy) -> list[Finding]:
    """Why this strategy cannot compile `policy` (empty when it can)."""
    try:
        return _classified(policy, planned_interfaces(policy))[0]
    except PlanError as exc:
        return exc.findings


def _classified(policy: Policy, ifclasses: InterfaceClasses) -> tuple[list[Finding], Tables | None]:
    """The refusals, and the classification tables when the rules fit them."""
    out: list[Finding] = []
    for rule in policy.rules:
        if rule.action is Action.RATE_LIMIT:
            out.append(
                error(
                    "FWC050",
                    f"rule `{rule.name}` uses action rate_limit, which the compiler does not "
                    "support yet",
                    rule.location,
                    rule.name,
                )
            )
        if rule.log:
            out.append(
                error(
                    "FWC050",
                    f"rule `{rule.name}` sets `log: true`, which the compiler does not support yet",
                    rule.location,
                    rule.name,
                )
            )
    try:
        return out, build_tables(policy.rules, ifclasses, policy.sets)
    except TablesTooLarge as exc:
        out.append(
            error(
                "FWC051",
                f"the tables strategy cannot hold this policy: {exc}",
                Location(policy.source_file),
            )
        )
    return out, None


def plan(
    policy: Policy,
    dry_run: bool,
    options: CompileOptions = DEFAULT_OPTIONS,
    lookups: Sequence[str] | None = None,
) -> Plan:
    """The plan of `policy`; raises PlanError when this strategy cannot compile it.

    The program looks up `lookups` (of LOOKUP_FIELDS), by default the fields some group's
    signature holds (looked_up). The tables of a field it does not look up are declared with
    one entry and not seeded.
    """
    ifclasses = planned_interfaces(policy)
    refused, tables = _classified(policy, ifclasses)
    if refused or tables is None:
        raise PlanError(refused)
    slots = counter_slots(policy)
    rule_capacity = capacity(len(policy.rules))
    buckets = combo_buckets(tables)
    combo_capacity = capacity(len(buckets.spilled))
    array_capacity = capacity(tables.array_size)
    tries = {
        (d, f): dir_trie(entries, f)
        for d, entries in (("s", tables.src), ("d", tables.dst))
        for f in Family
    }
    if lookups is None:
        lookups = looked_up(tables)
    unread = {t for t in _TABLE_FIELD if _TABLE_FIELD[t] not in lookups}
    set_entries, set_seeds = _sets(tables, tries, lookups)
    # the tries live set changes paint get room to grow (docs/tables.md, "Live set changes")
    painted = {t.table for e in set_entries for t in e.tries}

    def room(table: str, used: int, floor: int) -> int:
        return used + floor + used // 16 if table in painted else used

    def sized(table: str, entries: int) -> int:
        return 1 if table in unread else entries

    dir_entries = {
        f"{d}{f.value}": sized(
            f"{d}{f.value}",
            DIR_ROOT
            + (capacity(room(f"{d}{f.value}", _chunks(flat, f), SET_ROOM_CHUNKS)) << UNIT[f]),
        )
        for (d, f), (flat, _, _) in tries.items()
    }
    dir_classes = {
        f"{d}{f.value}": sized(f"{d}{f.value}", capacity(len(c)))
        for (d, f), (_, c, _) in tries.items()
    }
    dir_skips = {
        f"{d}{f.value}": sized(f"{d}{f.value}", capacity(room(f"{d}{f.value}", len(k), SET_ROOM)))
        for (d, f), (_, _, k) in tries.items()
    }
    program = TablesProgram(
        program_name=program_name(policy),
        policy_name=policy.name,
        dry_run=dry_run,
        slot_count=len(slots),
        slot_would_drop=special_slots(policy)["would_drop"],
        groups=MAX_GROUPS,
        l4_keys=L4_KEYS * len(ifclasses.classes) * tables.ct_rows,
        ports={"sport": sized("sp", PORTS), "dport": sized("dp", PORTS)},
        port_classes={
            "sport": sized("sp", capacity(len(tables.sport_classes))),
            "dport": sized("dp", capacity(len(tables.dport_classes))),
        },
        rule_capacity=rule_capacity,
        combo_capacity=combo_capacity,
        array_capacity=array_capacity,
        bucket_count=buckets.count,
        bucket_slots=BUCKET_SLOTS,
        hash_mult=HASH_MULT,
        fields=len(FIELDS),
        dir_entries=dir_entries,
        dir_classes=dir_classes,
        dir_skips=dir_skips,
        dir_root=DIR_ROOT,
        v6_wide=(WIDE_UNTIL[Family.IPV6] - DIR_ROOT_BITS) // 8,
        v6_levels=(WIDE_UNTIL[Family.IPV6] - DIR_ROOT_BITS) // 8
        + (Family.IPV6.width - WIDE_UNTIL[Family.IPV6]) // 4,
        v6_unit=UNIT[Family.IPV6],
        iface_classes=len(ifclasses.classes) if ifclasses.used else 0,
        iface_entries=IFACES_ENTRIES if ifclasses.used else 0,
        conntrack=tables.ct_rows == CT_ROWS,
        ct_block=L4_KEYS * len(ifclasses.classes) if tables.ct_rows == CT_ROWS else 0,
        set_maps={
            seed.map[:-1]: capacity(seed.count + SET_ROOM + seed.count // 16) for seed in set_seeds
        },
        lookups=tuple(lookups),
    )
    return Plan(
        policy=policy,
        strategy="tables",
        program=program,
        maps=program_maps(program),
        seeds=seeds(policy, tables, buckets, tries, unread) + set_seeds,
        dry_run=dry_run,
        counter_slots=slots,
        interfaces=ifclasses,
        sets=set_entries,
    )


def _sets(
    tables: Tables, tries: Mapping[tuple[str, Family], Trie], lookups: Sequence[str]
) -> tuple[tuple[SetEntry, ...], tuple[Seed, ...]]:
    """What a live change of each set needs (docs/tables.md, "Live set changes"): its member
    map's seed, and per trie it is painted into, the class of each class index with the set's
    predicates added and removed."""
    entries: list[SetEntry] = []
    seeds: list[Seed] = []
    for edit in tables.sets:
        skipped = [FIELDS[f] for f in edit.fields if FIELDS[f] not in lookups]
        if edit.refused or skipped:
            # the program does not read a field no group's signature holds (looked_up)
            why = edit.refused or f"the program does not look up the {skipped[0]} address"
            entries.append(SetEntry(edit.name, why))
            continue
        base = live_sets.members_map(len(seeds))
        records = sorted(
            {live_sets.member(r.family.value, r.network, r.prefix_len) for r in edit.members}
            | {
                live_sets.member(r.family.value, r.network, r.prefix_len, live_sets.OTHER_KIND)
                for r in edit.others
            }
        )
        seeds.append(
            Seed(
                generation_map(base, 0),
                IMAGE_KEY_SIZE,
                live_sets.MEMBER.size,
                _padded(live_sets.MEMBER.size, records),
                IMAGE,
            )
        )
        set_tries = []
        for at, field in enumerate(edit.fields):
            direction = "s" if field == SRC else "d"
            for family in Family:
                classes = tries[direction, family][1]
                ids = {c: i for i, c in enumerate(classes)}
                set_tries.append(
                    SetTrie(
                        f"{direction}{family.value}",
                        tuple(_moved(c, edit.add[at], ids) for c in classes),
                        tuple(_moved(c, edit.remove[at], ids) for c in classes),
                    )
                )
        entries.append(SetEntry(edit.name, "", generation_map(base, 0), tuple(set_tries)))
    return tuple(entries), tuple(seeds)


def _moved(
    classes: tuple[int, ...], by_group: Sequence[Sequence[int]], ids: Mapping[tuple[int, ...], int]
) -> int:
    """The class index of `classes` with each group's class moved by `by_group` (-1: none)."""
    moved = tuple(by_group[g][c] for g, c in enumerate(classes))
    return -1 if -1 in moved else ids.get(moved, -1)


def program_maps(p: TablesProgram) -> tuple[MapInfo, ...]:
    """The maps the template declares, in its order: both generations of every table."""
    maps = [
        MapInfo("fwc_counters", "percpu_array", 4, 16, p.slot_count),
        MapInfo("fwc_gen", "array", 4, 4, 1),
    ]
    if p.iface_entries:
        maps += interface_maps()
    for g in p.generations:
        maps += [
            MapInfo(generation_map("fwc_cfg", g), "array", 4, CFG.size, 1),
            *(
                m
                for t in p.dir_entries
                for m in (
                    MapInfo(generation_map(f"fwc_{t}_", g), "array", 4, U32.size, p.dir_entries[t]),
                    MapInfo(
                        generation_map(f"fwc_{t}c_", g),
                        "array",
                        4,
                        ADDR_VALUE.size,
                        p.dir_classes[t],
                    ),
                )
            ),
            *(
                MapInfo(
                    generation_map(f"fwc_{t}k_", g), "array", 4, SKIP_RECORD.size, p.dir_skips[t]
                )
                for t in p.dir_skips
            ),
            MapInfo(generation_map("fwc_l4_", g), "array", 4, CLASSES16.size, p.l4_keys),
            MapInfo(generation_map("fwc_sp", g), "array", 4, U16.size, p.ports["sport"]),
            MapInfo(generation_map("fwc_dp", g), "array", 4, U16.size, p.ports["dport"]),
            MapInfo(
                generation_map("fwc_spc", g), "array", 4, CLASSES16.size, p.port_classes["sport"]
            ),
            MapInfo(
                generation_map("fwc_dpc", g), "array", 4, CLASSES16.size, p.port_classes["dport"]
            ),
            MapInfo(generation_map("fwc_carr", g), "array", 4, U32.size, p.array_capacity),
            MapInfo(generation_map("fwc_bkt", g), "array", 4, BUCKET.size, p.bucket_count),
            MapInfo(generation_map("fwc_comb", g), "hash", U64.size, U32.size, p.combo_capacity),
            MapInfo(generation_map("fwc_rule", g), "array", 4, RULE.size, p.rule_capacity),
        ]
        if p.conntrack:
            maps.append(MapInfo(generation_map(CT_TABLE, g), "array", 4, U32.size, p.rule_capacity))
        maps += [
            MapInfo(generation_map(base, g), "array", 4, live_sets.MEMBER.size, entries)
            for base, entries in p.set_maps.items()
        ]
    return tuple(maps)


def capacity(count: int) -> int:
    """Entries one generation of a map may hold: a power of two, at least MIN_CAPACITY."""
    return max(MIN_CAPACITY, 1 << max(count - 1, 0).bit_length())


# The trie's slots (an array: 50k rules paint 2 M of them), its class tuples, its skip records.
Trie = tuple["array[int]", list[tuple[int, ...]], list[tuple[int, ...]]]


def seeds(
    policy: Policy,
    tables: Tables,
    buckets: ComboBuckets,
    tries: Mapping[tuple[str, Family], Trie],
    unread: Set[str] = frozenset(),
) -> tuple[Seed, ...]:
    """Generation 0 of every table but those of the `unread` _TABLE_FIELD stems, which the
    program does not look up; generation 1 starts empty and fwc_gen starts at 0."""
    cfg = CFG.pack(
        tables.ngroups,
        _XDP[policy.default_action],
        *special_slots(policy).values(),
        tables.array_size,
        buckets.count - 1,
        *(
            value
            for g in range(MAX_GROUPS)
            for value in (
                (tables.bases[g], *tables.mults[g], tables.firsts[g])
                if g < tables.ngroups
                else (0,) * (len(FIELDS) + 2)
            )
        ),
    )
    return (
        _image_seed("fwc_cfg0", CFG.size, _padded(CFG.size, [cfg])),
        *(
            seed
            for d, field in (("s", SRC), ("d", DST))
            for seed in _address_seeds(tables, d, field, tries, unread)
        ),
        _image_seed("fwc_l4_0", CLASSES16.size, _classes(tables, L4, tables.l4, CLASSES16)),
        *_port_seeds(tables, unread),
        _image_seed("fwc_carr0", U32.size, _combo_array(tables)),
        _image_seed("fwc_bkt0", BUCKET.size, _buckets(buckets)),
        Seed("fwc_comb0", U64.size, U32.size, _spilled(buckets)),
        _image_seed("fwc_rule0", RULE.size, _elements(RULE, _rules(policy.rules))),
        *(
            (
                _image_seed(
                    generation_map(CT_TABLE, 0),
                    U32.size,
                    _column([r.ct_states for r in _by_id(policy.rules)], U32),
                ),
            )
            if tables.ct_rows == CT_ROWS
            else ()
        ),
    )


def _pad(values: Sequence[int], width: int) -> tuple[int, ...]:
    return (*values, *([0] * (width - len(values))))


def _address_seeds(
    tables: Tables,
    direction: str,
    field: int,
    tries: Mapping[tuple[str, Family], Trie],
    unread: Set[str],
) -> tuple[Seed, ...]:
    out = []
    for family in Family:
        if f"{direction}{family.value}" in unread:
            continue
        flat, classes, skips = tries[direction, family]
        name = f"fwc_{direction}{family.value}"
        out.append(_image_seed(f"{name}_0", U32.size, _column(flat, U32)))
        out.append(
            _image_seed(f"{name}c_0", ADDR_VALUE.size, _classes(tables, field, classes, ADDR_VALUE))
        )
        out.append(_image_seed(f"{name}k_0", SKIP_RECORD.size, _elements(SKIP_RECORD, skips)))
    return tuple(out)


def _port_seeds(tables: Tables, unread: Set[str]) -> tuple[Seed, ...]:
    """The port -> class columns, then the class records, of the port fields the program reads."""
    read = [
        (stem, field, column, classes)
        for stem, field, column, classes in (
            ("sp", SPORT, tables.sport, tables.sport_classes),
            ("dp", DPORT, tables.dport, tables.dport_classes),
        )
        if stem not in unread
    ]
    return (
        *(
            _image_seed(f"fwc_{stem}0", U16.size, _column(column, U16))
            for stem, _, column, _ in read
        ),
        *(
            _image_seed(
                f"fwc_{stem}c0", CLASSES16.size, _classes(tables, field, classes, CLASSES16)
            )
            for stem, field, _, classes in read
        ),
    )


def dir_trie(entries: Sequence[AddressEntry], family: Family) -> Trie:
    """One family's entries as a leaf-pushed multibit trie array, class index -> classes, and
    the skip records (artifact/trie.py writes them)."""
    ids: dict[tuple[int, ...], int] = {}
    trie = ArrayTrie(family.width, array("I", bytes(4 * DIR_ROOT)), [])
    deep: dict[int, list[trie_layout.Prefix]] = {}
    shift = family.width - DIR_ROOT_BITS
    for e in sorted(
        (e for e in entries if e.family is family), key=lambda e: (e.prefix_len, e.network)
    ):
        cid = ids.setdefault(e.classes, len(ids))
        slot = e.network >> shift
        if e.prefix_len <= DIR_ROOT_BITS:
            trie.fill(slot, 1 << (DIR_ROOT_BITS - e.prefix_len), cid)
        else:
            deep.setdefault(slot, []).append((e.network, e.prefix_len, cid))
    for slot in sorted(deep):
        trie.set_slot(slot, trie_layout.build(trie, deep[slot], DIR_ROOT_BITS, trie.slot(slot)))
    return trie.flat, list(ids), trie.skips


@dataclass
class ArrayTrie:
    """A trie being built: its slots in an array, its skip records in a list."""

    width: int
    flat: array[int]
    skips: list[tuple[int, ...]]

    def slot(self, index: int) -> int:
        return self.flat[index]

    def set_slot(self, index: int, value: int) -> None:
        self.flat[index] = value

    def fill(self, start: int, span: int, value: int) -> None:
        self.flat[start : start + span] = array("I", [value]) * span

    def alloc(self, slots: int, value: int) -> int:
        start = len(self.flat)
        self.flat.extend(array("I", [value]) * slots)
        return start

    def skip(self, record: trie_layout.SkipRecord) -> int:
        self.skips.append(record)
        return len(self.skips) - 1

    def read_skip(self, index: int) -> trie_layout.SkipRecord:
        mask_hi, mask_lo, hi, lo, hit, miss = self.skips[index]
        return mask_hi, mask_lo, hi, lo, hit, miss

    def write_skip(self, index: int, record: trie_layout.SkipRecord) -> None:
        self.skips[index] = record


def _chunks(flat: Sequence[int], family: Family) -> int:
    return (len(flat) - DIR_ROOT) >> UNIT[family]


def dir_lookup(
    flat: array[int], family: Family, address: int, skips: Sequence[tuple[int, ...]] = ()
) -> int:
    """The class index of an address: the walk the XDP program does."""
    return trie_layout.lookup(ArrayTrie(family.width, flat, list(skips)), address)


def _image_seed(name: str, value_size: int, image: bytes) -> Seed:
    """The seed of an array map whose keys are 0 .. count-1, as the array's memory."""
    return Seed(name, IMAGE_KEY_SIZE, value_size, image, IMAGE)


def _padded(value_size: int, values: Sequence[bytes]) -> bytes:
    """Packed values, each followed by the zeros up to the array's element stride."""
    pad = bytes(image_stride(value_size) - value_size)
    return pad.join(values) + pad if values else b""


def _elements(value: struct.Struct, rows: Sequence[Sequence[int]]) -> bytes:
    """An array's image: the i-th row packed as `value` at element i."""
    stride = image_stride(value.size)
    out = bytearray(stride * len(rows))
    for i, row in enumerate(rows):
        value.pack_into(out, i * stride, *row)
    return bytes(out)


def _classes(
    tables: Tables, field: int, rows: Sequence[Sequence[int]], value: struct.Struct
) -> bytes:
    """Class records of one field, by class index: candidate mask, the classes."""
    stride = image_stride(value.size)
    out = bytearray(stride * len(rows))
    for i, row in enumerate(rows):
        value.pack_into(out, i * stride, field_mask(tables, field, row), *_pad(row, MAX_GROUPS))
    return bytes(out)


def _column(values: Sequence[int], value: struct.Struct) -> bytes:
    """An array's image of scalars (u16, u32): each in the low bytes of its 8-byte element,
    copied a byte lane at a time (a struct call per value took seconds at 10k rules)."""
    column = array(value.format[-1], values)
    if sys.byteorder != "little":
        column.byteswap()
    raw, width = column.tobytes(), column.itemsize
    out = bytearray(len(column) * image_stride(width))
    for b in range(width):
        out[b :: image_stride(width)] = raw[b::width]
    return bytes(out)


def _combo_array(tables: Tables) -> bytes:
    """Every slot of the array's range, 0 for "no rule": a live update rewrites all of them."""
    values = array("I", bytes(4 * tables.array_size))
    for index, rule in tables.combos.items():
        if index >= tables.array_size:
            break
        values[index] = rule + 1
    return _column(values, U32)


@dataclass(frozen=True)
class ComboBuckets:
    """The combo indexes at or above the array size: BUCKET_SLOTS (index, rule id + 1) slots per
    bucket, value 0 for an empty slot, the buckets an index spilled from, and the spilled
    indexes (the hash map's records). Arrays, not a tuple per bucket: 50k rules fill 524,288."""

    keys: array[int]
    values: array[int]
    overflow: frozenset[int]
    spilled: Mapping[int, int]

    @property
    def count(self) -> int:
        return len(self.values) // BUCKET_SLOTS

    def pairs(self, bucket: int) -> list[tuple[int, int]]:
        """The (index, rule id + 1) pairs bucket `bucket` holds."""
        at = bucket * BUCKET_SLOTS
        return [
            (self.keys[i], self.values[i]) for i in range(at, at + BUCKET_SLOTS) if self.values[i]
        ]

    def get(self, index: int) -> int:
        """rule id + 1 of `index`, or 0: the probe the XDP program does."""
        b = bucket_of(index, self.count - 1)
        for key, value in self.pairs(b):
            if key == index:
                return value
        return self.spilled.get(index, 0) if b in self.overflow else 0


def bucket_of(index: int, mask: int) -> int:
    return (index * HASH_MULT & U64_MASK) >> 32 & mask


def combo_buckets(tables: Tables) -> ComboBuckets:
    """About two indexes per bucket: at that load under 2 % of the indexes spill to the hash.
    Indexes go in in increasing order (`Combos` iterates so), which decides who spills."""
    hashed = len(tables.combos) - bisect.bisect_left(tables.combos.indexes, tables.array_size)
    count = max(MIN_BUCKETS, 1 << max(hashed // 2 - 1, 0).bit_length())
    keys = array("Q", bytes(8 * BUCKET_SLOTS * count))
    values = array("I", bytes(4 * BUCKET_SLOTS * count))
    used = bytearray(count)
    overflow: set[int] = set()
    spilled: dict[int, int] = {}
    for index, rule in tables.combos.items():
        if index < tables.array_size:
            continue
        b = bucket_of(index, count - 1)
        if used[b] < BUCKET_SLOTS:
            keys[b * BUCKET_SLOTS + used[b]] = index
            values[b * BUCKET_SLOTS + used[b]] = rule + 1
            used[b] += 1
        else:
            overflow.add(b)
            spilled[index] = rule + 1
    return ComboBuckets(keys, values, frozenset(overflow), spilled)


def _buckets(buckets: ComboBuckets) -> bytes:
    """Every bucket, empty ones included: a live update must clear what the old policy held."""
    stride = image_stride(BUCKET.size)
    out = bytearray(stride * buckets.count)
    for b in range(buckets.count):
        at = b * BUCKET_SLOTS
        BUCKET.pack_into(
            out,
            b * stride,
            *buckets.keys[at : at + BUCKET_SLOTS],
            *buckets.values[at : at + BUCKET_SLOTS],
            int(b in buckets.overflow),
        )
    return bytes(out)


def _spilled(buckets: ComboBuckets) -> bytes:
    return b"".join(U64.pack(i) + U32.pack(v) for i, v in sorted(buckets.spilled.items()))


def _by_id(rules: Sequence[Rule]) -> Sequence[Rule]:
    """The rules, checked to be indexed by id: the rule tables are arrays keyed by it."""
    if [r.id for r in rules] != list(range(len(rules))):
        raise ValueError("rule ids are not 0 .. n-1 in order")
    return rules


def _rules(rules: Sequence[Rule]) -> list[tuple[int, int]]:
    return [(_XDP[r.action], r.id) for r in _by_id(rules)]


def table_bytes(plan: Plan) -> int:
    """Seed bytes of one generation: what the artifact carries for the tables."""
    return sum(len(s.data) for s in plan.seeds)
