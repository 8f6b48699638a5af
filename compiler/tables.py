"""The tables strategy: a fixed XDP program whose rules live in map seeds (docs/tables.md)."""

from __future__ import annotations

import functools
import struct
from collections.abc import Iterable, Sequence

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
ADDR_KEYS = {Family.IPV4: struct.Struct("<I4s"), Family.IPV6: struct.Struct("<I16s")}
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
    addr_capacity = {
        (d, f): capacity(sum(1 for e in entries if e.family is f))
        for d, entries in (("s", tables.src), ("d", tables.dst))
        for f in Family
    }
    maps = [
        MapInfo("fwc_counters", "percpu_array", 4, 16, len(slots)),
        MapInfo("fwc_gen", "array", 4, 4, 1),
    ]
    for g in GENERATIONS:
        maps += [
            MapInfo(f"fwc_cfg{g}", "array", 4, CFG.size, 1),
            *(
                MapInfo(
                    f"fwc_{d}{f.value}_{g}",
                    "lpm_trie",
                    ADDR_KEYS[f].size,
                    ADDR_VALUE.size,
                    addr_capacity[d, f],
                )
                for d in "sd"
                for f in Family
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
            "addr_capacity": {f"{d}{f.value}": c for (d, f), c in addr_capacity.items()},
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
            Seed(f"fwc_{d}{f.value}_0", ADDR_KEYS[f].size, ADDR_VALUE.size, _addresses(entries, f))
            for d, entries in (("s", tables.src), ("d", tables.dst))
            for f in Family
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


def _addresses(entries: Iterable[AddressEntry], family: Family) -> bytes:
    """LPM records: prefix length (host order), the network in network order, the classes."""
    key = ADDR_KEYS[family]
    return b"".join(
        key.pack(e.prefix_len, e.network.to_bytes(family.width // 8, "big"))
        + ADDR_VALUE.pack(*_pad(e.classes, MAX_GROUPS))
        for e in entries
        if e.family is family
    )


def _array(rows: Sequence[Sequence[int]], value: struct.Struct) -> bytes:
    width = MAX_GROUPS
    return b"".join(U32.pack(i) + value.pack(*_pad(row, width)) for i, row in enumerate(rows))


def _scalars(values: Sequence[int]) -> bytes:
    return b"".join(U32.pack(i) + U16.pack(v) for i, v in enumerate(values))


def _combos(tables: Tables) -> bytes:
    return b"".join(COMBO_KEY.pack(*key) + U32.pack(rule) for key, rule in tables.combos.items())


def _rules(rules: Sequence[Rule]) -> bytes:
    return b"".join(U32.pack(r.id) + RULE.pack(_XDP[r.action], r.id) for r in rules)


def table_bytes(plan: Plan) -> int:
    """Seed bytes of one generation: what the artifact carries for the tables."""
    return sum(len(s.records) for s in plan.seeds)
