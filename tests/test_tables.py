"""The tables plan: maps, seed records and findings, without a kernel."""

from __future__ import annotations

import dataclasses
import re
import struct
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fwc.artifact import trie as trie_layout
from fwc.compiler.backend.plan import Seed
from fwc.compiler.backend.render import render
from fwc.compiler.backend.tables import classify
from fwc.compiler.backend.tables import plan as tables
from fwc.compiler.backend.tables.classify import AddressEntry
from fwc.compiler.policy.ir import Action, AddressRange, Family, Policy
from fwc.compiler.policy.normalize import normalize
from fwc.compiler.policy.source import load_bytes

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def policy() -> Policy:
    doc, _ = load_bytes((ROOT / "policies" / "edge-web.yaml").read_bytes(), "edge-web.yaml")
    assert doc is not None
    policy, _ = normalize(doc)
    assert policy is not None
    return policy


def records(seed: Seed) -> list[tuple[bytes, bytes]]:
    step = seed.key_size + seed.value_size
    data = seed.records  # built from the seed's image on each read
    return [
        (data[i : i + seed.key_size], data[i + seed.key_size : i + step])
        for i in range(0, len(data), step)
    ]


@pytest.mark.parametrize(
    ("count", "expected"), [(0, 1024), (1, 1024), (1024, 1024), (1025, 2048), (90_000, 131072)]
)
def test_capacity(count: int, expected: int) -> None:
    assert tables.capacity(count) == expected


def test_plan_declares_both_generations_and_seeds_generation_zero(policy: Policy) -> None:
    plan = tables.plan(policy, dry_run=False)
    names = {m.name for m in plan.maps}
    assert {"fwc_counters", "fwc_gen", "fwc_cfg0", "fwc_cfg1", "fwc_comb0", "fwc_comb1"} <= names
    assert all(len(name) <= 15 for name in names)
    seeded = {s.map for s in plan.seeds}
    assert seeded <= names and all(name.endswith("0") for name in seeded)
    sizes = {m.name: (m.key_size, m.value_size, m.max_entries) for m in plan.maps}
    for seed in plan.seeds:
        key_size, value_size, max_entries = sizes[seed.map]
        assert (seed.key_size, seed.value_size) == (key_size, value_size)
        # the combo hash is empty when every group fits the combo array; skips may be none
        empty_ok = seed.map == "fwc_comb0" or seed.map.endswith("k_0")
        assert 0 < seed.count <= max_entries or (empty_ok and seed.count == 0)
        assert len(seed.records) == seed.count * (key_size + value_size)


def test_port_class_tables_are_sized_by_the_classes_they_hold() -> None:
    """A port's class record is 68 bytes: 65,536 of them per field and generation would be
    17 MB for a policy of a few ports."""

    def dport_rules(count: int) -> str:
        rules = "".join(
            f"  - {{name: r{i}, action: allow, protocol: tcp, destination_ports: [{1000 + i}]}}\n"
            for i in range(count)
        )
        return f"version: 1\nname: ports\ndefault_action: deny\nrules:\n{rules}"

    for count, expected in ((3, 1024), (1500, 2048)):
        doc, _ = load_bytes(dport_rules(count).encode(), "ports.yaml")
        assert doc is not None
        policy, _ = normalize(doc)
        assert policy is not None
        plan = tables.plan(policy, dry_run=False)
        sizes = {m.name: m.max_entries for m in plan.maps}
        assert sizes["fwc_dpc0"] == sizes["fwc_dpc1"] == expected
        assert sizes["fwc_dp0"] == tables.PORTS
        assert f"FWC_T_ARRAY(fwc_dpc1, {expected}, struct fwc_tcls16);" in render(plan)


def test_tables_of_fields_the_program_does_not_read_are_empty(policy: Policy) -> None:
    """No rule of edge-web names a destination: the destination tables get one entry each
    and no seed, unless the program is made to read every field."""
    plan = tables.plan(policy, dry_run=False)
    assert isinstance(plan.program, tables.TablesProgram)
    assert plan.program.lookups == ("src", "sport", "dport")
    sizes = {m.name: m.max_entries for m in plan.maps}
    unread = {f"fwc_d{f}{t}_{g}" for f in (4, 6) for t in ("", "c", "k") for g in (0, 1)}
    assert {name for name, entries in sizes.items() if entries == 1} >= unread
    assert sizes["fwc_s4_0"] > tables.DIR_ROOT and sizes["fwc_dp0"] == tables.PORTS
    every = tables.plan(policy, dry_run=False, lookups=tables.LOOKUP_FIELDS)
    seeded = {s.map for s in plan.seeds}
    assert {s.map for s in every.seeds} - seeded == {n for n in unread if n.endswith("0")}
    assert min(m.max_entries for m in every.maps if m.name in unread) > 1


def test_seeds_hold_the_classification_tables(policy: Policy) -> None:
    plan = tables.plan(policy, dry_run=False)
    built = classify.build_tables(policy.rules)
    seeds = {s.map: s for s in plan.seeds}
    combos = {
        struct.unpack("<Q", k)[0]: struct.unpack("<I", v)[0] for k, v in records(seeds["fwc_comb0"])
    }
    buckets = [tables.BUCKET.unpack(v) for _, v in records(seeds["fwc_bkt0"])]
    slots = tables.BUCKET_SLOTS
    for b, bucket in enumerate(buckets):
        pairs = {k: v for k, v in zip(bucket[:slots], bucket[slots : 2 * slots], strict=True) if v}
        assert all(tables.bucket_of(k, len(buckets) - 1) == b for k in pairs)
        combos |= pairs
    array = [struct.unpack("<I", v)[0] for _, v in records(seeds["fwc_carr0"])]
    assert len(array) == built.array_size
    assert min(combos, default=built.array_size) >= built.array_size
    combos |= {i: v for i, v in enumerate(array) if v}
    assert combos == {i: rule + 1 for i, rule in built.combos.items()}
    cfg = struct.unpack(tables.CFG.format, records(seeds["fwc_cfg0"])[0][1])
    n = len(policy.rules)
    assert cfg[:6] == (built.ngroups, tables.XDP_DROP, n, n + 1, n + 2, n + 3)
    for family in Family:
        flat, classes, _ = tables.dir_trie(built.src, family)
        assert len(records(seeds[f"fwc_s{family.value}_0"])) == len(flat)
        assert len(records(seeds[f"fwc_s{family.value}c_0"])) == len(classes)
    rules = [struct.unpack("<II", v) for _, v in records(seeds["fwc_rule0"])]
    actions = {Action.ALLOW: tables.XDP_PASS, Action.DENY: tables.XDP_DROP}
    assert rules == [(actions[r.action], r.id) for r in policy.rules]
    assert len(records(seeds["fwc_sp0"])) == classify.PORTS


BASES = {
    Family.IPV4: [0x0A000000, 0x0A010000, 0x0A010180, 0xC0A80001, 0xFFFFFFFF],
    Family.IPV6: [0x20010DB8 << 96, (0x20010DB8 << 96) | (1 << 70), 0xFD00 << 112, 2**128 - 1],
}


@st.composite
def nets(draw: st.DrawFn, family: Family) -> AddressRange:
    plen = draw(st.integers(1, family.width))
    base = draw(st.sampled_from(BASES[family]))
    shift = family.width - plen
    return AddressRange(family, base >> shift << shift, plen)


@st.composite
def trie_cases(draw: st.DrawFn) -> tuple[Family, list[AddressEntry], list[int]]:
    family = draw(st.sampled_from(list(Family)))
    drawn = draw(st.lists(st.tuples(nets(family), st.integers(1, 5)), max_size=12))
    entries = [AddressEntry(family, 0, 0, (0,))] + [
        AddressEntry(family, n.network, n.prefix_len, (c,)) for n, c in dict(drawn).items()
    ]
    near = st.sampled_from(BASES[family]).map(lambda b: b ^ draw(st.integers(0, 3)))
    addresses = draw(st.lists(st.integers(0, 2**family.width - 1) | near, max_size=20))
    return family, entries, addresses


@settings(max_examples=200, deadline=None)
@given(trie_cases())
def test_trie_walk_is_the_longest_match(case: tuple[Family, list[AddressEntry], list[int]]) -> None:
    family, entries, addresses = case
    flat, classes, skips = tables.dir_trie(entries, family)
    for address in addresses:
        best = max(
            (e for e in entries if e.prefix_len == 0 or _under(e, family, address)),
            key=lambda e: e.prefix_len,
        )
        assert classes[tables.dir_lookup(flat, family, address, skips)] == best.classes


def _under(e: AddressEntry, family: Family, address: int) -> bool:
    shift = family.width - e.prefix_len
    return address >> shift == e.network >> shift


@settings(max_examples=50, deadline=None)
@given(
    st.dictionaries(st.integers(0, 2**63 - 1), st.integers(0, 50_000), max_size=3000),
    st.lists(st.integers(0, 2**63 - 1), max_size=50),
)
def test_bucket_probe_finds_every_combo(combos: dict[int, int], absent: list[int]) -> None:
    """Every index is found in its bucket or, when that bucket was full, in the spill."""
    built = classify.build_tables(())
    buckets = tables.combo_buckets(
        dataclasses.replace(built, combos=classify.Combos.of(combos), array_size=0)
    )
    for index, rule in combos.items():
        assert buckets.get(index) == rule + 1
    for index in absent:
        assert buckets.get(index) == (combos[index] + 1 if index in combos else 0)


def test_full_buckets_spill_to_the_hash() -> None:
    same = (i for i in range(10**7) if tables.bucket_of(i, tables.MIN_BUCKETS - 1) == 0)
    combos = {next(same): rule for rule in range(tables.BUCKET_SLOTS + 3)}
    built = classify.build_tables(())
    buckets = tables.combo_buckets(
        dataclasses.replace(built, combos=classify.Combos.of(combos), array_size=0)
    )
    assert buckets.spilled and buckets.overflow
    assert len(buckets.spilled) + sum(len(buckets.pairs(b)) for b in range(buckets.count)) == len(
        combos
    )
    assert all(buckets.get(i) == rule + 1 for i, rule in combos.items())


def test_program_shape_depends_on_the_rules_only_through_the_fields_they_constrain(
    policy: Policy,
) -> None:
    """Map sizes and slot counts change, and which fields the program looks up; with the same
    fields the classification code is the same text, but for the words of the claims digest
    (artifact/claims.py), which a live update leaves out."""
    small = dataclasses.replace(policy, rules=policy.rules[:1])
    fewer = dataclasses.replace(policy, rules=policy.rules[:-1])

    def body(p: Policy, lookups: tuple[str, ...] | None = None) -> str:
        source = render(tables.plan(p, dry_run=False, lookups=lookups))
        source = re.sub(r"FWC_CLAIMS\([^)]*\)", "FWC_CLAIMS(...)", source)
        return source[source.index("static __fwc_inline int fwc_t_finish") :]

    def lookups(p: Policy) -> tuple[str, ...]:
        program = tables.plan(p, dry_run=False).program
        assert isinstance(program, tables.TablesProgram)
        return program.lookups

    assert lookups(fewer) == lookups(policy) and body(fewer) == body(policy)
    assert lookups(small) != lookups(policy) and body(small) != body(policy)
    assert body(small, tables.LOOKUP_FIELDS) == body(policy, tables.LOOKUP_FIELDS)


def test_findings_refuse_rate_limit_and_too_large(policy: Policy) -> None:
    assert tables.findings(policy) == []
    limited = dataclasses.replace(
        policy,
        rules=(
            dataclasses.replace(
                policy.rules[0], action=Action.RATE_LIMIT, rate_limit_pps=5, rate_limit_burst=5
            ),
        ),
    )
    assert [f.id for f in tables.findings(limited)] == ["FWC050"]
    original = classify.MAX_COMBOS
    classify.MAX_COMBOS = 1
    try:
        big = dataclasses.replace(policy, name="big-variant")
        assert "FWC051" in [f.id for f in tables.findings(big)]
    finally:
        classify.MAX_COMBOS = original


@settings(max_examples=200, deadline=None)
@given(trie_cases(), st.data())
def test_painting_a_prefix_changes_exactly_its_addresses(
    case: tuple[Family, list[AddressEntry], list[int]], data: st.DataObject
) -> None:
    """artifact/trie.py's `paint`, as `fw-load set` runs it: every address of the prefix takes
    change(its class), every other keeps its class; painted again, over chunks, skip records
    and earlier paints alike."""
    family, entries, addresses = case
    flat, _, skips = tables.dir_trie(entries, family)
    trie = tables.ArrayTrie(family.width, flat, list(skips))
    regions = data.draw(st.lists(nets(family), min_size=1, max_size=3))
    top = (1 << family.width) - 1
    probes = set(addresses) | {
        a
        for r in regions
        for a in (r.first, r.last, r.first - 1, r.last + 1, (r.first + r.last) // 2)
        if 0 <= a <= top
    }
    want = {a: trie_layout.lookup(trie, a) for a in probes}
    for step, region in enumerate(regions, start=1):
        trie_layout.paint(trie, region.network, region.prefix_len, lambda c, s=step: c + 100 * s)
        for a in probes:
            if region.first <= a <= region.last:
                want[a] += 100 * step
        assert {a: trie_layout.lookup(trie, a) for a in probes} == want
