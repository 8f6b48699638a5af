"""The tables program in the kernel against the reference evaluator, through generation flips."""

from __future__ import annotations

import dataclasses
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from strategies import frames, policies

from fwc.compiler.backend.build import compile_policy
from fwc.compiler.backend.plan import Seed
from fwc.compiler.backend.render import headers, render
from fwc.compiler.backend.tables import classify
from fwc.compiler.backend.tables import plan as tables
from fwc.compiler.backend.toolchain import find_toolchain
from fwc.compiler.oracle import frames as fr
from fwc.compiler.oracle.evaluate import evaluate
from fwc.compiler.policy.ir import Policy
from fwc.loader.kernel import libbpf
from fwc.loader.kernel.program import LoadedProgram, read_counters

pytestmark = pytest.mark.kernel

ROOT = Path(__file__).resolve().parent.parent
# The carrier program has room for any policy the strategies draw (<= 30 rules).
CARRIER_SLOTS = 64
CARRIER_CAPACITY = 1 << 16
# A small combo array keeps each example's rewrite small and sends larger groups to the buckets;
# few buckets make full ones spill to the hash, so hypothesis checks all three combo paths.
CARRIER_ARRAY = 64
CARRIER_BUCKETS = 2
CARRIER_PROGRAM = "fwc_xdp"
# Maps whose stale keys must be deleted: arrays are overwritten in full.
KEYED_MAPS = ("hash", "lpm_trie")
ETH_HLEN = 14


class Carrier:
    """One loaded tables program whose generations are rewritten per policy (the live update)."""

    def __init__(self, obj: libbpf.Object) -> None:
        self.obj = obj
        self.prog_fd = obj.program_fd(CARRIER_PROGRAM)
        self.maps = {m.name: m for m in obj.maps()}
        # What each map of each generation holds, so a rewrite touches only what changed.
        self.shadow: dict[str, dict[bytes, bytes]] = {name: {} for name in self.maps}
        self.arrays: dict[str, bytes] = {}
        self.live = 0

    def fd(self, name: str) -> int:
        return self.obj.map_fd(name)

    def install(self, seeds: tuple[Seed, ...]) -> None:
        """docs/tables.md, "Live update": fill the idle generation, then flip fwc_gen."""
        idle = 1 - self.live
        for seed in seeds:
            if seed.map.startswith("fwc_set"):
                continue  # a set's member map: fw-load set reads it, the program never does
            name = seed.map[:-1] + str(idle)
            self._write(name, seed)
        libbpf.map_update(self.fd("fwc_gen"), bytes(4), idle.to_bytes(4, "little"))
        self.live = idle

    def _write(self, name: str, seed: Seed) -> None:
        fd = self.fd(name)
        step = seed.key_size + seed.value_size
        records = seed.records
        if self.maps[name].type not in KEYED_MAPS:
            # Arrays: the idle generation keeps the old values until overwritten.
            old_records = self.arrays.get(name, b"")
            block = step * 1024
            for start in range(0, len(records), block):
                # whole unchanged blocks are skipped with one compare
                if records[start : start + block] == old_records[start : start + block]:
                    continue
                for i in range(start, min(start + block, len(records)), step):
                    if records[i : i + step] != old_records[i : i + step]:
                        key, value = (
                            records[i : i + seed.key_size],
                            records[i + seed.key_size : i + step],
                        )
                        libbpf.map_update(fd, key, value)
            if len(records) >= len(old_records):
                self.arrays[name] = records
            else:
                self.arrays[name] = records + old_records[len(records) :]
            return
        new = {
            records[i : i + seed.key_size]: records[i + seed.key_size : i + step]
            for i in range(0, len(records), step)
        }
        old = self.shadow[name]
        for key in old.keys() - new.keys():
            libbpf.map_delete(fd, key)
        for key, value in new.items():
            if old.get(key) != value:
                libbpf.map_update(fd, key, value)
        self.shadow[name] = new


def _carrier_source(dry_run: bool) -> str:
    rules = tuple(
        dataclasses.replace(r, id=i, name=f"c{i}")
        for i, r in enumerate(_sample_policy().rules * CARRIER_SLOTS)
    )[:CARRIER_SLOTS]
    policy = dataclasses.replace(_sample_policy(), rules=rules)
    # every field, whatever the policies installed in the carrier constrain
    plan = tables.plan(policy, dry_run, lookups=tables.LOOKUP_FIELDS)
    program = plan.program
    assert isinstance(program, tables.TablesProgram)
    program = dataclasses.replace(
        program,
        program_name=CARRIER_PROGRAM,
        combo_capacity=CARRIER_CAPACITY,
        bucket_count=CARRIER_CAPACITY,
        array_capacity=CARRIER_ARRAY,
        dir_skips={t: CARRIER_CAPACITY for t in program.dir_skips},
        dir_classes={t: CARRIER_CAPACITY for t in program.dir_classes},
        ports={f: tables.PORTS for f in program.ports},
        port_classes={f: tables.PORTS for f in program.port_classes},
        # Room for the longest chains the strategies draw: a /128 costs 4 chunks of 256 slots
        # and 20 of 16.
        dir_entries={
            t: tables.DIR_ROOT + ((1 << 18) if t.endswith("6") else (1 << 12 + 8))
            for t in program.dir_entries
        },
    )
    return render(dataclasses.replace(plan, program=program))


def _sample_policy() -> Policy:
    from fwc.compiler.policy.normalize import normalize
    from fwc.compiler.policy.source import load_bytes

    doc, _ = load_bytes((ROOT / "policies" / "edge-web.yaml").read_bytes(), "edge-web.yaml")
    assert doc is not None
    policy, _ = normalize(doc)
    assert policy is not None
    return policy


@pytest.fixture(scope="module")
def carrier(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Carrier]:
    work = tmp_path_factory.mktemp("carrier")
    original = classify.ARRAY_SLOTS, tables.MIN_BUCKETS
    classify.ARRAY_SLOTS = CARRIER_ARRAY
    tables.MIN_BUCKETS = CARRIER_BUCKETS
    try:
        (work / "fwc_xdp.c").write_text(_carrier_source(dry_run=False))
        for name, text in headers().items():
            (work / name).write_bytes(text)
        clang = find_toolchain().clang
        subprocess.run(
            [str(clang), "-O2", "-g", "-target", "bpf", "-c", "fwc_xdp.c", "-o", "fwc_xdp.o"],
            cwd=work,
            check=True,
        )
        obj = libbpf.Object((work / "fwc_xdp.o").read_bytes())
        obj.load()
        try:
            yield Carrier(obj)
        finally:
            obj.close()
    finally:
        classify.ARRAY_SLOTS, tables.MIN_BUCKETS = original


def _check(carrier: Carrier, policy: Policy, frame_list: list[bytes]) -> None:
    # the carrier reads every field: it takes the tables of each, whether the policy's own
    # program would read them or not
    plan = tables.plan(policy, dry_run=False, lookups=tables.LOOKUP_FIELDS)
    carrier.install(plan.seeds)
    counters = carrier.fd("fwc_counters")
    for frame in frame_list:
        before = read_counters(counters, CARRIER_SLOTS + 4)
        want = evaluate(policy, frame)
        retval, _, _ = libbpf.prog_test_run(carrier.prog_fd, frame)
        assert retval == want.xdp_action, (want.decided_by, frame.hex())
        after = read_counters(counters, CARRIER_SLOTS + 4)
        moved = [i for i, (a, b) in enumerate(zip(before, after, strict=True)) if a != b]
        assert moved == [want.counter_slot], (want.decided_by, frame.hex())


@st.composite
def policy_and_frames(draw: st.DrawFn, max_rules: int = 30) -> tuple[Policy, list[bytes]]:
    policy = draw(policies(min_rules=0, max_rules=max_rules))
    # BPF_PROG_TEST_RUN refuses frames shorter than an Ethernet header.
    testable = frames(policy).filter(lambda f: len(f) >= ETH_HLEN)
    return policy, draw(st.lists(testable, min_size=1, max_size=12))


@settings(
    max_examples=100,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(policy_and_frames())
def test_tables_program_matches_the_evaluator(
    carrier: Carrier, case: tuple[Policy, list[bytes]]
) -> None:
    policy, frame_list = case
    _check(carrier, policy, frame_list)


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(policy_and_frames(max_rules=8))
def test_compiled_programs_skip_the_fields_no_rule_constrains(
    tmp_path_factory: pytest.TempPathFactory, case: tuple[Policy, list[bytes]]
) -> None:
    """Each policy compiled on its own, as fwc compile builds it: the program looks up only the
    fields some group's signature holds (the carrier looks up all of them) and still gives the
    evaluator's verdict on every frame."""
    policy, frame_list = case
    out = tmp_path_factory.mktemp("lookups") / "tables.o"
    compile_policy(policy, output=out, strategy="tables", cache_dir=None)
    built = tables.plan(policy, dry_run=False)
    assert isinstance(built.program, tables.TablesProgram)
    classified = tables._classified(policy, tables.planned_interfaces(policy))[1]
    assert classified is not None
    signatures = classified.signatures
    constrained = {name for s in signatures for f, name in enumerate(classify.FIELDS) if s >> f & 1}
    assert set(built.program.lookups) == constrained - {"l4"}
    with LoadedProgram.load(out) as prog:
        for frame in frame_list:
            want = evaluate(policy, frame)
            assert prog.test_run(frame).retval == want.xdp_action, (want.decided_by, frame.hex())


def test_edge_web_does_not_look_up_the_destination() -> None:
    """No rule of edge-web names a destination: its program walks no destination trie."""
    built = tables.plan(_sample_policy(), dry_run=False)
    assert isinstance(built.program, tables.TablesProgram)
    assert built.program.lookups == ("src", "sport", "dport")
    source = render(built)
    assert "fwc_t_addr4(s4m" in source and "fwc_t_addr4(d4m" not in source


def test_flip_switches_policies_without_reload(carrier: Carrier) -> None:
    policy = _sample_policy()
    allow_all = dataclasses.replace(policy, rules=(), default_action=policy.rules[0].action)
    frame = fr.build_frame(fr.fields_from_mapping({"proto": "tcp", "dport": 22}))
    for p in (policy, allow_all, policy):
        _check(carrier, p, [frame])


@pytest.mark.parametrize("dry_run", [False, True])
def test_artifact_path(tmp_path: Path, dry_run: bool) -> None:
    """compile -> ELF with seed sections -> LoadedProgram seeds them -> same verdicts."""
    policy = _sample_policy()
    out = tmp_path / "tables.o"
    result = compile_policy(policy, output=out, strategy="tables", dry_run=dry_run)
    assert result.manifest["strategy"] == "tables"
    assert {s["map"] for s in result.manifest["seeds"]} >= {"fwc_cfg0", "fwc_comb0"}
    cases = [
        {"proto": "tcp", "dport": 22},
        {"proto": "tcp", "dport": 443, "src": "203.0.113.7"},
        {"proto": "udp", "dport": 53, "src": "2001:db8::5"},
        {"proto": "icmp", "icmp_type": 8},
        {"proto": "tcp", "dport": 80, "fragment": "non-first"},
    ]
    with LoadedProgram.load(out) as prog:
        for fields in cases:
            frame = fr.build_frame(fr.fields_from_mapping(fields))
            want = evaluate(policy, frame, dry_run=dry_run)
            prog.reset_counters()
            assert prog.test_run(frame).retval == want.xdp_action, fields
            counts = prog.counters()
            slots = {want.counter_slot} | ({len(policy.rules) + 3} if want.would_drop else set())
            assert {i for i, (p, _) in enumerate(counts) if p} == slots, fields
