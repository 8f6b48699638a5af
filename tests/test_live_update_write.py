"""How a live update writes the idle generation: mmap images of arrays, the hash diff, its
shadow, the batch fallback for maps without BPF_F_MMAPABLE, and the ELF reader it relies on."""

from __future__ import annotations

import dataclasses
import hashlib
import mmap
import os
import struct
import sys
import textwrap
from array import array
from collections.abc import Iterator
from io import BytesIO
from pathlib import Path

import pytest
from elftools.elf.elffile import ELFFile
from elftools.elf.relocation import RelocationSection
from elftools.elf.sections import SymbolTableSection
from hypothesis import given, settings
from hypothesis import strategies as st

from fwc.artifact import claims
from fwc.artifact.layout import image_stride, iota
from fwc.compiler.backend.build import compile_policy
from fwc.compiler.backend.plan import Seed
from fwc.compiler.oracle.evaluate import evaluate
from fwc.loader.apply.transaction import _pin
from fwc.loader.kernel import array_mmap, libbpf
from fwc.loader.kernel.libbpf import KernelError
from fwc.loader.kernel.meta import read_meta_map
from fwc.loader.kernel.program import LoadedProgram
from fwc.loader.kernel.records import join_records, split_records
from fwc.loader.live import digests as table_digests
from fwc.loader.live import hash_shadow
from fwc.loader.live.compat import can_update_in_place
from fwc.loader.live.digest import program_sha256
from fwc.loader.live.errors import LiveUpdateError
from fwc.loader.live.hash_diff import hash_changes
from fwc.loader.live.remap import remap_image, remap_records
from fwc.loader.live.seen import resolve
from fwc.loader.live.update import update_in_place
from fwc.loader.live.writers import write_array, write_hash
from fwc.loader.node import pins
from fwc.loader.reader import objfile
from fwc.loader.reader.artifact import read_artifact
from fwc.loader.reader.seeds import SeedSpec
from tests import loader_fixtures
from tests.loader_netns import FWC, sh, unique

BPF_MAP_TYPE_HASH = 1
POLICY = """
name: lu-write
default_action: allow
rules:
  - {name: allow_dns, priority: 10, action: allow, protocol: udp, destination_ports: [53]}
  - {name: deny_net, priority: 20, action: deny, source_cidrs: ["10.0.0.0/8"]}
"""


def _records(items: list[tuple[int, bytes]]) -> bytes:
    return b"".join(struct.pack("<I", key) + value for key, value in items)


# values needing no padding (8, 40, 56...), padding one key long (4, 12, 68, 132), other (1-3, 6)
@pytest.mark.parametrize("value_size", [1, 2, 3, 4, 6, 8, 12, 40, 56, 64, 68, 128, 132])
@pytest.mark.parametrize("first", [0, 17])
def test_image_places_each_value_at_its_stride(value_size: int, first: int) -> None:
    values = [bytes([i % 251 + 1, i % 7]) * value_size for i in range(300)]
    values = [value[:value_size] for value in values]
    records = _records([(first + i, value) for i, value in enumerate(values)])
    image = array_mmap.image(records, value_size, 1000, first)
    assert image is not None
    gap = image_stride(value_size)
    assert len(image) == 300 * gap
    for i, value in enumerate(values):
        assert image[i * gap : i * gap + value_size] == value
        assert image[i * gap + value_size : (i + 1) * gap] == bytes(gap - value_size)
    assert array_mmap.image(records, value_size, 1000, first + 1) is None


@pytest.mark.parametrize(
    ("keys", "entries"),
    [([1, 0, 2], 8), ([0, 1, 3], 8), ([0, 0, 1], 8), ([0, 1, 2], 2), ([0, 65536], 70000)],
)
def test_image_refuses_keys_other_than_0_to_n(keys: list[int], entries: int) -> None:
    assert array_mmap.image(_records([(k, b"\1\2\3\4") for k in keys]), 4, entries) is None


def test_iota_matches_the_keys_of_any_length() -> None:
    for count in (0, 1, 255, 256, 257, 65535, 65536, 70000, 5):
        assert bytes(iota(count)) == array("I", range(count)).tobytes()


def test_split_and_join_are_inverse() -> None:
    for key_size, value_size in ((4, 2), (8, 4), (4, 128), (3, 5)):
        step = key_size + value_size
        records = bytes(range(256)) * step
        keys, values = split_records(records, key_size, value_size)
        assert join_records(keys, values, key_size, value_size) == records


@st.composite
def hash_versions(draw: st.DrawFn) -> tuple[dict[int, int], dict[int, int], bool]:
    keys = st.integers(0, 2**64 - 1) | st.integers(0, 3000)
    old = draw(st.dictionaries(keys, st.integers(0, 9), max_size=1500))
    new = dict(old)
    for key in draw(st.lists(st.sampled_from(sorted(old)), max_size=200)) if old else []:
        new.pop(key, None)
    new.update(draw(st.dictionaries(keys, st.integers(0, 9), max_size=300)))
    return old, new, draw(st.booleans())


def _packed(items: dict[int, int], shuffle: bool) -> bytes:
    pairs = sorted(items.items(), reverse=shuffle)
    return b"".join(struct.pack("<QI", k, v) for k, v in pairs)


@settings(max_examples=200, deadline=None)
@given(hash_versions())
def test_hash_changes_turn_the_old_records_into_the_new(
    versions: tuple[dict[int, int], dict[int, int], bool],
) -> None:
    old, new, unsorted = versions
    stale, fresh = hash_changes(_packed(old, unsorted), _packed(new, False), 8, 4)
    result = dict(old)
    for (key,) in struct.iter_unpack("<Q", stale):
        del result[key]  # a batch delete needs every key present
    written = dict(struct.iter_unpack("<QI", fresh))
    result.update(written)
    assert result == new
    assert {k for k, v in new.items() if old.get(k) != v} <= set(written)


def test_hash_changes_of_a_small_edit_touch_only_its_intervals() -> None:
    old = {k * 5: k % 3 for k in range(20_000)}
    # 15 keys go, one is new, two change value
    new = {k: v for k, v in old.items() if k % 7000} | {3: 1, 10_000: 1, 99_995: 0}
    stale, fresh = hash_changes(_packed(old, False), _packed(new, False), 8, 4)
    gone = {k for (k,) in struct.iter_unpack("<Q", stale)}
    written = dict(struct.iter_unpack("<QI", fresh))
    assert set(range(0, 100_000, 7000)) <= gone
    assert {3: 1, 10_000: 1, 99_995: 0}.items() <= written.items()
    # at most two intervals of 64 records around each of the 18 changes
    assert len(written) <= 18 * 2 * 64


def test_program_digest_matches_the_pyelftools_reading(tmp_path: Path) -> None:
    """Pinned manifests of live policies hold digests computed with pyelftools."""
    artifact = _compile(tmp_path)
    data = artifact.read_bytes()
    parsed = ELFFile(BytesIO(data))
    # the claims words are left out: they change with the rules (artifact/claims.py)
    digest = hashlib.sha256(claims.masked(parsed.get_section_by_name("xdp").data()))
    rel = parsed.get_section_by_name(".relxdp")
    assert isinstance(rel, RelocationSection)
    symbols = parsed.get_section(rel["sh_link"])
    assert isinstance(symbols, SymbolTableSection)
    for entry in rel.iter_relocations():
        name = symbols.get_symbol(entry["r_info_sym"]).name
        digest.update(entry["r_offset"].to_bytes(8, "little") + name.encode() + b"\0")
    assert program_sha256(data, "xdp") == digest.hexdigest()
    ours = objfile.read_object(data)
    assert list(ours.sections) == [s.name for s in parsed.iter_sections()]
    for section in parsed.iter_sections():
        if section["sh_type"] != "SHT_NOBITS":
            assert bytes(ours.sections[section.name].data) == section.data()


@pytest.mark.parametrize(
    ("data", "problem"),
    [
        (b"", "Magic number"),
        (b"\x7fELF" + bytes(60), "EI_CLASS"),
        (b"\x7fELF\1\1" + bytes(58), "64-bit"),
    ],
    ids=["empty", "no class", "32-bit"],
)
def test_elf_reader_refuses_broken_headers(data: bytes, problem: str) -> None:
    with pytest.raises(objfile.ObjectError, match=problem):
        objfile.read_object(data)


def _compile(tmp_path: Path) -> Path:
    source = tmp_path / f"{unique('luw')}.yaml"
    source.write_text(textwrap.dedent(POLICY))
    artifact = source.with_suffix(".o")
    sh(
        FWC,
        "compile",
        str(source),
        "-o",
        str(artifact),
        "--strategy",
        "tables",
        "--no-gate",
        timeout=120,
    )
    return artifact


# -- kernel: the maps themselves ------------------------------------------------------------


@pytest.mark.kernel
def test_generation_arrays_are_mmapable_and_their_lookups_stay_inlined(tmp_path: Path) -> None:
    spec = read_artifact(_compile(tmp_path))
    with LoadedProgram.from_spec(spec) as program:
        for m in spec.maps:
            flags = libbpf.map_info(program.map_fd(m.name)).flags
            generation_array = m.type == "array" and m.name != "fwc_gen"
            assert bool(flags & array_mmap.BPF_F_MMAPABLE) == generation_array, m.name
        xlated = sh("bpftool", "prog", "dump", "xlated", "id", str(program.prog_id)).stdout
    # the verifier inlines array lookups: no helper call is left for any array map
    assert "array_map_lookup_elem" not in xlated
    assert "__htab_map_lookup_elem" in xlated


@pytest.fixture
def pin_dir() -> Iterator[Path]:
    path = Path("/sys/fs/bpf") / unique("fwcluw")
    path.mkdir()
    try:
        yield path
    finally:
        pins.remove_tree(path)


def _lookup_all(fd: int, entries: int, value_size: int) -> list[bytes]:
    return [
        libbpf.map_lookup(fd, struct.pack("<I", key), value_size) or b"" for key in range(entries)
    ]


def _seed(map_name: str, key_size: int, value_size: int, records: bytes) -> SeedSpec:
    return SeedSpec(map_name, f".fwc.seed.{map_name}", key_size, value_size, memoryview(records))


@pytest.mark.kernel
@pytest.mark.parametrize("flags", [array_mmap.BPF_F_MMAPABLE, 0])
def test_array_writes_reach_the_kernel_and_clear_what_is_above(flags: int) -> None:
    """mmap writes are what the kernel reads back; a map without the flag takes the batch."""
    entries, value_size = 70_000, 6
    fd = libbpf.map_create(libbpf.BPF_MAP_TYPE_ARRAY, "fwc_t_arr0", 4, value_size, entries, flags)
    try:
        info = libbpf.map_info(fd)
        assert array_mmap.mmapable(info) == bool(flags)
        big = [(k, struct.pack("<IH", k * 7 + 1, k % 65535)) for k in range(entries)]
        _, written = write_array(
            fd, info, _seed("fwc_t_arr0", 4, 6, _records(big)), _records(big), []
        )
        assert written >= entries
        assert _lookup_all(fd, entries, value_size) == [v for _, v in big]
        # a smaller policy: its values, then zeros where the larger one had entries
        small = [(k, struct.pack("<IH", k + 3, 9)) for k in range(1000)]
        write_array(fd, info, _seed("fwc_t_arr0", 4, 6, _records(small)), _records(small), [])
        got = _lookup_all(fd, entries, value_size)
        assert got[:1000] == [v for _, v in small]
        if flags:
            assert set(got[1000:]) == {bytes(value_size)}
        # known to hold it already: nothing to write
        tracked, _ = write_array(
            fd, info, _seed("fwc_t_arr0", 4, 6, again := _records(small)), again, []
        )
        known = resolve({"fwc_t_arr0": tracked})["fwc_t_arr0"]
        assert write_array(fd, info, _seed("fwc_t_arr0", 4, 6, again), again, known)[1] == 0
    finally:
        os.close(fd)


def _mapped(fd: int, info: libbpf.MapInfo) -> bytes:
    size = info.max_entries * image_stride(info.value_size)
    with mmap.mmap(fd, size, mmap.MAP_SHARED, mmap.PROT_READ) as mapped:
        return bytes(mapped)


def _expected(records: bytes, value_size: int, entries: int) -> bytes:
    image = array_mmap.image(records, value_size, entries)
    assert image is not None
    return bytes(image).ljust(entries * image_stride(value_size), b"\0")


@pytest.mark.kernel
@pytest.mark.parametrize("value_size", [4, 6, 56])
def test_patch_makes_the_map_hold_the_new_image(value_size: int) -> None:
    """Edited, shortened and lengthened seeds: the map ends as a whole write would leave it,
    and only the differing blocks count as written; a mostly new seed, or keys off their
    indexes, leave it alone (the caller writes a whole image, or by batch)."""
    entries = 40_000
    fd = libbpf.map_create(
        libbpf.BPF_MAP_TYPE_ARRAY, "fwc_t_patch", 4, value_size, entries, array_mmap.BPF_F_MMAPABLE
    )
    try:
        info = libbpf.map_info(fd)

        def seed(count: int, salt: int, edits: tuple[int, ...] = ()) -> bytes:
            return _records(
                [
                    (k, ((k * 31 + salt + (k in edits)) % 256).to_bytes(1, "little") * value_size)
                    for k in range(count)
                ]
            )

        old = seed(30_000, 1)
        want = array_mmap.image(old, value_size, entries)
        assert want is not None
        array_mmap.write(fd, info, want)
        edited = seed(30_000, 1, (5, 29_999))
        for new in (edited, seed(25_000, 1, (5,)), seed(31_000, 1, (5, 25_001))):
            done = array_mmap.patch(fd, info, old, new, value_size)
            assert done is not None
            assert 0 < done.elements < entries
            assert _mapped(fd, info) == _expected(new, value_size, entries)
            old = new
        before = _mapped(fd, info)
        assert array_mmap.patch(fd, info, old, seed(31_000, 2), value_size) is None
        assert _mapped(fd, info) == before
        swapped = bytearray(old)
        step = 4 + value_size
        swapped[:4], swapped[step : step + 4] = swapped[step : step + 4], swapped[:4]
        assert array_mmap.patch(fd, info, old, bytes(swapped), value_size) is None
        assert _mapped(fd, info) == before
    finally:
        os.close(fd)


@pytest.mark.kernel
def test_a_seed_known_to_the_process_is_compared_not_digested() -> None:
    """After a write, the recorded digest finds the kept bytes: an equal seed writes nothing,
    an edited one only its block; the map always ends holding the seed."""
    entries, value_size = 50_000, 4
    flags = array_mmap.BPF_F_MMAPABLE
    fd = libbpf.map_create(libbpf.BPF_MAP_TYPE_ARRAY, "fwc_t_seen0", 4, value_size, entries, flags)
    try:
        info = libbpf.map_info(fd)
        first = _records([(k, struct.pack("<I", k + 1)) for k in range(entries)])
        tracked, written = write_array(fd, info, _seed("fwc_t_seen0", 4, 4, first), first, [])
        assert written == entries
        known = resolve({"fwc_t_seen0": tracked})["fwc_t_seen0"]
        assert known == ["whole:" + hashlib.sha256(first).hexdigest()]
        same = bytes(first)
        assert write_array(fd, info, _seed("fwc_t_seen0", 4, 4, same), same, known) == (known, 0)
        edited = bytearray(first)
        edited[4:8] = struct.pack("<I", 99)
        tracked, written = write_array(
            fd, info, _seed("fwc_t_seen0", 4, 4, bytes(edited)), bytes(edited), known
        )
        assert 0 < written < entries
        assert resolve({"m": tracked})["m"] == ["whole:" + hashlib.sha256(edited).hexdigest()]
        assert _mapped(fd, info) == _expected(bytes(edited), value_size, entries)
    finally:
        os.close(fd)


@pytest.mark.kernel
def test_hash_writes_trust_the_shadow_only_when_the_digests_vouch(pin_dir: Path) -> None:
    fd = libbpf.map_create(BPF_MAP_TYPE_HASH, "fwc_t_comb1", 8, 4, 4096, flags=1)
    try:

        def contents() -> dict[int, int]:
            keys, values = libbpf.map_items(fd, 8, 4)
            return dict(zip(array("Q", keys), array("I", values), strict=True))

        def write(items: dict[int, int], known: list[str]) -> list[str]:
            records = _packed(items, False)
            shadow = hash_shadow.Shadow(pin_dir / hash_shadow.pin_name("fwc_t_comb1"), 12, 4096)
            try:
                digests, _ = write_hash(
                    fd, _seed("fwc_t_comb0", 8, 4, records), records, known, shadow
                )
            finally:
                shadow.close()
            return digests

        first = {k * 3: k % 7 for k in range(2000)}
        known = write(first, [])
        assert contents() == first
        second = {k: v + 1 for k, v in first.items() if k % 5} | {10**12 + k: 1 for k in range(50)}
        known = write(second, known)
        assert contents() == second
        # someone changed the map behind fw-load's back and the digests say unknown: read it
        libbpf.map_update(fd, struct.pack("<Q", 7), struct.pack("<I", 5))
        write(second, [])
        assert contents() == second
        assert known == table_digests.chunk_digests(_packed(second, False), 12)
    finally:
        os.close(fd)


@pytest.mark.kernel
def test_live_updates_through_the_combo_hash_keep_every_verdict(
    pin_dir: Path, tmp_path: Path
) -> None:
    """1,000 bench rules put about 10,000 combos in the buckets and a few dozen spills in the
    hash: edits, another policy and back, some of them back to back (the RCU wait), each
    checked against evaluate() in the kernel."""
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))
    from policies import load_policy, make_policy_yaml, make_traffic

    base = make_policy_yaml(1000, 1)
    texts = {
        "base": base,
        "edited": base.replace("destination_ports: [80]", "destination_ports: [8081]", 5),
        "other": make_policy_yaml(1000, 2).replace("name: bench-1000-2", "name: bench-1000-1"),
    }
    policies = {label: load_policy(text) for label, text in texts.items()}
    artifacts = {}
    for label, policy in policies.items():
        artifacts[label] = tmp_path / f"{label}.o"
        compile_policy(policy, output=artifacts[label], strategy="tables", cache_dir=None)
    first = read_artifact(artifacts["base"])
    counts = {s.map: s.count for s in first.seeds}
    assert counts["fwc_bkt0"] > 1000 and counts["fwc_comb0"] > 10
    with LoadedProgram.from_spec(first) as program:
        _pin(first, program, pins.policy_pins(pin_dir, first.policy_name))
        meta = pins.policy_pins(pin_dir, first.policy_name).meta
        for step, label in enumerate(["edited", "other", "base", "other", "edited", "base"]):
            spec = read_artifact(artifacts[label], map_definitions=False)
            live = read_meta_map(meta)
            assert can_update_in_place(live, spec) == (True, "")
            done = update_in_place(pin_dir, live, spec)
            assert done.to_generation == (step + 1) % 2
            # what `fw-load run` keeps for the next request is exactly what is pinned
            assert done.manifest == read_meta_map(meta)
            meta_fd = libbpf.obj_get(meta)
            try:
                assert libbpf.map_info(meta_fd).id == done.meta_id
            finally:
                os.close(meta_fd)
            for _, frame in make_traffic(policies[label], 3, 6):
                want = evaluate(policies[label], frame).xdp_action
                assert program.test_run(frame).retval == want, (label, frame.hex())
        # the idle hash changed behind fw-load's back: the update fails before the flip,
        # the live generation keeps classifying, and the next update reads the map back
        idle_comb = libbpf.obj_get(pins.policy_pins(pin_dir, first.policy_name).map("fwc_comb1"))
        try:
            key = libbpf.map_next_key(idle_comb, None, 8)
            assert key is not None and libbpf.map_delete(idle_comb, key)
        finally:
            os.close(idle_comb)
        other = read_artifact(artifacts["other"], map_definitions=False)
        with pytest.raises(LiveUpdateError, match="before the flip"):
            update_in_place(pin_dir, read_meta_map(meta), other)
        for _, frame in make_traffic(policies["base"], 4, 4):
            assert program.test_run(frame).retval == evaluate(policies["base"], frame).xdp_action
        assert update_in_place(pin_dir, read_meta_map(meta), other).to_generation == 1
        for _, frame in make_traffic(policies["other"], 4, 4):
            assert program.test_run(frame).retval == evaluate(policies["other"], frame).xdp_action


@pytest.mark.parametrize("value_size", [2, 4, 8, 12, 56])
def test_an_image_seed_reads_back_as_the_records_it_was_made_from(value_size: int) -> None:
    """An image section, as the compiler's seed and as the loader's, reads back as the records
    the writer's image was made from."""
    count = 37
    records = b"".join(
        struct.pack("<I", i) + bytes((i * 7 + b) % 256 for b in range(value_size))
        for i in range(count)
    )
    image = array_mmap.image(records, value_size, count)
    assert image is not None and len(image) == count * image_stride(value_size)
    plan_seed = Seed("fwc_x0", 4, value_size, bytes(image), "image")
    assert plan_seed.count == count and plan_seed.records == records
    spec = SeedSpec("fwc_x0", ".fwc.seed.fwc_x0", 4, value_size, memoryview(image), "image")
    assert spec.count == count and bytes(spec.records) == records


def test_counter_slots_move_alike_in_images_and_records() -> None:
    """fwc_rule (action, slot) and fwc_cfg (slots in u32 fields 2..5) are remapped the same
    way whichever layout the seed has."""
    mapping = {0: 7, 1: 3, 2: 9, 3: 0, 4: 1, 5: 2}
    rules = b"".join(struct.pack("<III", i, 1 + i % 2, i) for i in range(3))
    cfg = struct.pack("<I", 0) + struct.pack("<8I", 11, 12, 3, 4, 5, 1, 13, 14)
    for name, value_size, records in (("fwc_rule0", 8, rules), ("fwc_cfg0", 32, cfg)):
        as_records = _seed(name, 4, value_size, records)
        image = array_mmap.image(records, value_size, len(records) // (4 + value_size))
        assert image is not None
        as_image = SeedSpec(name, as_records.section, 4, value_size, memoryview(image), "image")
        want = array_mmap.image(remap_records(as_records, mapping), value_size, as_records.count)
        assert remap_image(memoryview(image), name, mapping) == want
        assert remap_image(memoryview(image), name, None) == image
        assert bytes(as_image.records) == records


@pytest.mark.kernel
def test_a_first_load_seeds_every_map_with_its_records(tmp_path: Path) -> None:
    """Image seeds go through mmap, the others in one batch; the kernel reads back exactly
    the seed records either way (the zeros above an array's seed included)."""
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))
    from policies import load_policy, make_policy_yaml

    artifact = tmp_path / "seeded.o"
    compile_policy(
        load_policy(make_policy_yaml(300, 5)), output=artifact, strategy="tables", cache_dir=None
    )
    spec = read_artifact(artifact)
    assert {s.layout for s in spec.seeds} == {"image", "records"}
    with LoadedProgram.from_spec(spec) as program:
        for seed in spec.seeds:
            fd = program.map_fd(seed.map)
            info = libbpf.map_info(fd)
            ks, vs = seed.key_size, seed.value_size
            got = {bytes(key): libbpf.map_lookup(fd, bytes(key), vs) for key, _ in seed.items()}
            assert got == dict(seed.items()), seed.map
            if array_mmap.mmapable(info):
                size = info.max_entries * image_stride(vs)
                with mmap.mmap(fd, size, mmap.MAP_SHARED, mmap.PROT_READ) as memory:
                    image = array_mmap.image(seed.records, vs, info.max_entries)
                    assert image is not None and memory[:] == bytes(image).ljust(size, b"\0")
            elif info.type != libbpf.BPF_MAP_TYPE_ARRAY:
                keys, _ = libbpf.map_items(fd, ks, vs)
                assert len(keys) // ks == seed.count, seed.map


@pytest.mark.kernel
def test_a_seed_the_kernel_refuses_is_named_by_its_key(tmp_path: Path) -> None:
    """When the batch fails, seeding goes a record at a time and names the key refused."""
    records = struct.pack("<II", 0, 7) + struct.pack("<II", 5, 9)  # key 5: beyond 1 entry
    seed = _seed("fwc_action", 4, 4, records)
    path = loader_fixtures.build(tmp_path)
    spec = read_artifact(path)
    spec = dataclasses.replace(spec, seeds=(seed,))
    with pytest.raises(KernelError, match="cannot seed map 'fwc_action' key 05000000"):
        LoadedProgram.from_spec(spec)
