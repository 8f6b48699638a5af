"""The tables strategy: a fixed XDP program whose rules live in map seeds (docs/tables.md)."""

from __future__ import annotations

import functools
import struct
from collections.abc import Sequence

from fwc.compiler.classify import (
    FIELDS,
    L4_KEYS,
    MAX_GROUPS,
    PORTS,
    AddressEntry,
    Tables,
    TablesTooLarge,
    build_tables,
)
from fwc.compiler.findings import Finding, Location, error
from fwc.compiler.ir import Action, Family, Policy, Rule
from fwc.compiler.plan import MapInfo, Plan, Seed, counter_slots

TEMPLATE = "tables.c.j2"
GENERATIONS = (0, 1)
XDP_DROP = 1
XDP_PASS = 2
_XDP = {Action.ALLOW: XDP_PASS, Action.DENY: XDP_DROP}
# Hash and trie maps are sized in powers of two from this floor, so a policy that grows a
# little still fits the live maps and can be updated without a reload.
MIN_CAPACITY = 1024

# Record layouts, little-endian like the BPF target; LPM key data is in network order.
CFG = struct.Struct(f"<6I{MAX_GROUPS}I{MAX_GROUPS}I")
ADDR6_KEY = struct.Struct("<I16s")
# IPv4 addresses walk a DIR-16-8-8 array: 65,536 slots for the top 16 bits, then 256-slot
# chunks for the next byte and the last one. A slot holds an address class, or CHUNK | the
# chunk number; chunk k starts at DIR_ROOT + k * DIR_CHUNK.
DIR_ROOT = 1 << 16
DIR_CHUNK = 256
CHUNK = 1 << 31
ADDR_VALUE = struct.Struct(f"<{MAX_GROUPS}I")
CLASSES16 = struct.Struct(f"<{MAX_GROUPS}H")
COMBO_KEY = struct.Struct(f"<I{len(FIELDS)}I")
RULE = struct.Struct("<II")
U32 = struct.Struct("<I")
U16 = struct.Struct("<H")


def findings(policy: Policy) -> list[Finding]:
    """Why this strategy cannot compile `policy` (empty when it can)."""
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
        _tables(policy.rules)
    except TablesTooLarge as exc:
        out.append(
            error(
                "FWC051",
                f"the tables strategy cannot hold this policy: {exc}",
                Location(policy.source_file),
            )
        )
    return out


@functools.lru_cache(maxsize=2)
def _tables(rules: tuple[Rule, ...]) -> Tables:
    return build_tables(rules)


def plan(policy: Policy, dry_run: bool) -> Plan:
    """The plan of a policy that `findings` accepts."""
    tables = _tables(policy.rules)
    n = len(policy.rules)
    slots = counter_slots(policy)
    rule_capacity = capacity(n)
    combo_capacity = capacity(len(tables.combos))
    v4 = {d: dir4(entries) for d, entries in (("s", tables.src), ("d", tables.dst))}
    v6_capacity = {
        d: capacity(sum(1 for e in entries if e.family is Family.IPV6))
        for d, entries in (("s", tables.src), ("d", tables.dst))
    }
    dir_entries = {d: DIR_ROOT + capacity(_chunks(flat)) * DIR_CHUNK for d, (flat, _) in v4.items()}
    v4_classes = {d: capacity(len(classes)) for d, (_, classes) in v4.items()}
    maps = [
        MapInfo("fwc_counters", "percpu_array", 4, 16, len(slots)),
        MapInfo("fwc_gen", "array", 4, 4, 1),
    ]
    for g in GENERATIONS:
        maps += [
            MapInfo(f"fwc_cfg{g}", "array", 4, CFG.size, 1),
            *(
                m
                for d in "sd"
                for m in (
                    MapInfo(f"fwc_{d}4_{g}", "array", 4, U32.size, dir_entries[d]),
                    MapInfo(f"fwc_{d}4c_{g}", "array", 4, ADDR_VALUE.size, v4_classes[d]),
                    MapInfo(
                        f"fwc_{d}6_{g}", "lpm_trie", ADDR6_KEY.size, ADDR_VALUE.size, v6_capacity[d]
                    ),
                )
            ),
            MapInfo(f"fwc_l4_{g}", "array", 4, CLASSES16.size, L4_KEYS),
            MapInfo(f"fwc_sp{g}", "array", 4, U16.size, PORTS),
            MapInfo(f"fwc_dp{g}", "array", 4, U16.size, PORTS),
            MapInfo(f"fwc_spc{g}", "array", 4, CLASSES16.size, PORTS),
            MapInfo(f"fwc_dpc{g}", "array", 4, CLASSES16.size, PORTS),
            MapInfo(f"fwc_comb{g}", "hash", COMBO_KEY.size, U32.size, combo_capacity),
            MapInfo(f"fwc_rule{g}", "array", 4, RULE.size, rule_capacity),
        ]
    return Plan(
        policy=policy,
        strategy="tables",
        template=TEMPLATE,
        context={
            "policy_name": policy.name,
            "dry_run": dry_run,
            "slot_count": len(slots),
            "slot_would_drop": n + 3,
            "groups": MAX_GROUPS,
            "l4_keys": L4_KEYS,
            "ports": PORTS,
            "rule_capacity": rule_capacity,
            "combo_capacity": combo_capacity,
            "dir_entries": dir_entries,
            "v4_classes": v4_classes,
            "v6_capacity": v6_capacity,
            "dir_root": DIR_ROOT,
            "dir_chunk": DIR_CHUNK,
        },
        maps=tuple(maps),
        seeds=seeds(policy, tables),
        dry_run=dry_run,
        counter_slots=slots,
    )


def capacity(count: int) -> int:
    """Entries one generation of a map may hold: a power of two, at least MIN_CAPACITY."""
    return max(MIN_CAPACITY, 1 << max(count - 1, 0).bit_length())


def seeds(policy: Policy, tables: Tables) -> tuple[Seed, ...]:
    """Generation 0 of every table; generation 1 starts empty and fwc_gen starts at 0."""
    n = len(policy.rules)
    cfg = CFG.pack(
        tables.ngroups,
        _XDP[policy.default_action],
        n,
        n + 1,
        n + 2,
        n + 3,
        *_pad(tables.signatures, MAX_GROUPS),
        *_pad(tables.firsts, MAX_GROUPS),
    )
    return (
        Seed("fwc_cfg0", 4, CFG.size, U32.pack(0) + cfg),
        *(
            seed
            for d, entries in (("s", tables.src), ("d", tables.dst))
            for seed in _address_seeds(d, entries)
        ),
        Seed("fwc_l4_0", 4, CLASSES16.size, _array(tables.l4, CLASSES16)),
        Seed("fwc_sp0", 4, U16.size, _scalars(tables.sport)),
        Seed("fwc_dp0", 4, U16.size, _scalars(tables.dport)),
        Seed("fwc_spc0", 4, CLASSES16.size, _array(tables.sport_classes, CLASSES16)),
        Seed("fwc_dpc0", 4, CLASSES16.size, _array(tables.dport_classes, CLASSES16)),
        Seed("fwc_comb0", COMBO_KEY.size, U32.size, _combos(tables)),
        Seed("fwc_rule0", 4, RULE.size, _rules(policy.rules)),
    )


def _pad(values: Sequence[int], width: int) -> tuple[int, ...]:
    return (*values, *([0] * (width - len(values))))


def _address_seeds(direction: str, entries: Sequence[AddressEntry]) -> tuple[Seed, ...]:
    flat, classes = dir4(entries)
    v6 = b"".join(
        ADDR6_KEY.pack(e.prefix_len, e.network.to_bytes(16, "big"))
        + ADDR_VALUE.pack(*_pad(e.classes, MAX_GROUPS))
        for e in entries
        if e.family is Family.IPV6
    )
    return (
        Seed(f"fwc_{direction}4_0", 4, U32.size, _scalars(flat, U32)),
        Seed(f"fwc_{direction}4c_0", 4, ADDR_VALUE.size, _array(classes, ADDR_VALUE)),
        Seed(f"fwc_{direction}6_0", ADDR6_KEY.size, ADDR_VALUE.size, v6),
    )


def dir4(entries: Sequence[AddressEntry]) -> tuple[list[int], list[tuple[int, ...]]]:
    """The IPv4 entries as a DIR-16-8-8 array (leaf-pushed), and class index -> classes.

    Painting prefixes from short to long makes every slot hold its longest match.
    """
    ids: dict[tuple[int, ...], int] = {}
    flat = [0] * DIR_ROOT
    for e in sorted((e for e in entries if e.family is Family.IPV4), key=lambda e: e.prefix_len):
        cid = ids.setdefault(e.classes, len(ids))
        if e.prefix_len <= 16:
            start, span = e.network >> 16, 1 << (16 - e.prefix_len)
        elif e.prefix_len <= 24:
            chunk = _child(flat, e.network >> 16)
            start = DIR_ROOT + chunk * DIR_CHUNK + (e.network >> 8 & 0xFF)
            span = 1 << (24 - e.prefix_len)
        else:
            outer = _child(flat, e.network >> 16)
            chunk = _child(flat, DIR_ROOT + outer * DIR_CHUNK + (e.network >> 8 & 0xFF))
            start = DIR_ROOT + chunk * DIR_CHUNK + (e.network & 0xFF)
            span = 1 << (32 - e.prefix_len)
        flat[start : start + span] = [cid] * span
    return flat, list(ids)


def _child(flat: list[int], slot: int) -> int:
    """The chunk under `slot`, made on first use and filled with the slot's current class."""
    if flat[slot] & CHUNK:
        return flat[slot] & ~CHUNK
    chunk = _chunks(flat)
    flat.extend([flat[slot]] * DIR_CHUNK)
    flat[slot] = CHUNK | chunk
    return chunk


def _chunks(flat: Sequence[int]) -> int:
    return (len(flat) - DIR_ROOT) // DIR_CHUNK


def dir4_lookup(flat: Sequence[int], address: int) -> int:
    """The class index of an IPv4 address: the walk the XDP program does."""
    slot = flat[address >> 16]
    for shift in (8, 0):
        if not slot & CHUNK:
            break
        slot = flat[DIR_ROOT + (slot & ~CHUNK) * DIR_CHUNK + (address >> shift & 0xFF)]
    return slot


def _array(rows: Sequence[Sequence[int]], value: struct.Struct) -> bytes:
    width = MAX_GROUPS
    return b"".join(U32.pack(i) + value.pack(*_pad(row, width)) for i, row in enumerate(rows))


def _scalars(values: Sequence[int], value: struct.Struct = U16) -> bytes:
    return b"".join(U32.pack(i) + value.pack(v) for i, v in enumerate(values))


def _combos(tables: Tables) -> bytes:
    return b"".join(COMBO_KEY.pack(*key) + U32.pack(rule) for key, rule in tables.combos.items())


def _rules(rules: Sequence[Rule]) -> bytes:
    return b"".join(U32.pack(r.id) + RULE.pack(_XDP[r.action], r.id) for r in rules)


def table_bytes(plan: Plan) -> int:
    """Seed bytes of one generation: what the artifact carries for the tables."""
    return sum(len(s.records) for s in plan.seeds)
