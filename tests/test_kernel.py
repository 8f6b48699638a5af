"""The kernel layer: load and seed, BPF_PROG_TEST_RUN, per-CPU counters, pins, verifier logs."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path

import loader_fixtures
import pytest

from fwc.artifact import codec
from fwc.artifact.manifest import LoaderRecord, RuleEntry
from fwc.loader.errors import LoaderError
from fwc.loader.kernel import libbpf
from fwc.loader.kernel.meta import create_meta_map, read_meta_fd, read_meta_map
from fwc.loader.kernel.program import KernelError, LoadedProgram, possible_cpus, read_counters

pytestmark = pytest.mark.kernel

XDP_ABORTED, XDP_DROP, XDP_PASS = 0, 1, 2
FRAMES = [b"\xff" * 14, bytes(60), bytes(range(256)) * 4]


@pytest.fixture
def artifact(tmp_path: Path) -> Path:
    return loader_fixtures.build(tmp_path)


def test_seeds_are_written_before_anyone_runs_the_program(artifact: Path) -> None:
    with LoadedProgram.load(artifact) as prog:
        assert prog.test_run(bytes(60)).retval == XDP_PASS


def test_without_seed_the_map_keeps_zeroes(tmp_path: Path) -> None:
    artifact = loader_fixtures.build(
        tmp_path, edit=lambda m: m.update(seeds=[]), sections={".fwc.seed.fwc_action": b""}
    )
    with LoadedProgram.load(artifact) as prog:
        assert prog.test_run(bytes(60)).retval == XDP_ABORTED


def test_test_run_returns_the_frame_and_a_duration(artifact: Path) -> None:
    with LoadedProgram.load(artifact) as prog:
        run = prog.test_run(bytes(range(64)), repeat=50)
        assert run.data_out == bytes(range(64))
        assert run.duration_ns >= 0


def test_counters_sum_every_frame(artifact: Path) -> None:
    with LoadedProgram.load(artifact) as prog:
        for frame in FRAMES:
            prog.test_run(frame, repeat=3)
        assert prog.counters() == [(3 * len(FRAMES), 3 * sum(map(len, FRAMES))), (0, 0)]
        prog.reset_counters()
        assert prog.counters() == [(0, 0), (0, 0)]


def test_counters_are_summed_over_cpus(artifact: Path) -> None:
    cpus = possible_cpus()
    with LoadedProgram.load(artifact) as prog:
        fd = prog.map_fd("fwc_counters")
        # one distinct (packets, bytes) per CPU, laid out as the kernel does (8-byte stride)
        value = b"".join(
            (cpu + 1).to_bytes(8, "little") + (100 * (cpu + 1)).to_bytes(8, "little")
            for cpu in range(cpus)
        )
        libbpf.map_update(fd, (1).to_bytes(4, "little"), value)
        total = cpus * (cpus + 1) // 2
        assert prog.counters()[1] == (total, 100 * total)
        assert read_counters(fd, 2)[1] == (total, 100 * total)


def test_possible_cpus_parses_ranges(tmp_path: Path) -> None:
    cases = {"0": 1, "0-1": 2, "0-3,6": 5, "0,2-3\n": 3}
    for text, want in cases.items():
        path = tmp_path / "possible"
        path.write_text(text)
        assert possible_cpus(str(path)) == want


def test_ids_fds_and_close(artifact: Path) -> None:
    prog = LoadedProgram.load(artifact)
    info = libbpf.prog_info(prog.prog_fd)
    assert (info.id, info.name, info.tag) == (prog.prog_id, "fwc_xdp", prog.prog_tag)
    assert len(info.map_ids) == 2
    counters = libbpf.map_info(prog.map_fd("fwc_counters"))
    assert (counters.name, counters.max_entries) == ("fwc_counters", 2)
    with pytest.raises(KernelError, match="no map 'nope'"):
        prog.map_fd("nope")
    prog_fd = prog.prog_fd
    prog.close()
    with pytest.raises(OSError):
        os.fstat(prog_fd)
    prog.close()


def test_pin_layout(artifact: Path) -> None:
    base = Path("/sys/fs/bpf") / f"fwc-test-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    try:
        with LoadedProgram.load(artifact) as prog:
            prog.pin(base)
            prog_id = prog.prog_id
        fd = libbpf.obj_get(base / "prog")
        try:
            assert libbpf.prog_info(fd).id == prog_id
        finally:
            os.close(fd)
        assert sorted(p.name for p in (base / "maps").iterdir()) == ["fwc_action", "fwc_counters"]
    finally:
        for path in sorted(base.rglob("*"), reverse=True):
            path.rmdir() if path.is_dir() else path.unlink()
        if base.exists():
            base.rmdir()


def test_verifier_rejection_carries_the_log(tmp_path: Path) -> None:
    artifact = loader_fixtures.build(tmp_path, source="xdp_oob_read.c")
    with pytest.raises(KernelError) as caught:
        LoadedProgram.load(artifact)
    error = caught.value
    assert "\n" not in str(error)
    assert "outside of the packet" in str(error)
    assert "invalid access to packet" in error.log
    assert error.log.rstrip().splitlines()[-1].startswith("processed ")
    # longer than one formatting buffer: libbpf's va_list was copied and formatted again
    assert len(error.log) > 8192
    assert error.log.lstrip().startswith(("func#0", "0: "))
    assert error.errno == 13


def test_meta_map_round_trip(tmp_path: Path) -> None:
    pin = Path("/sys/fs/bpf") / f"fwc-meta-test-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    base = json.loads(json.dumps(loader_fixtures.BASE_MANIFEST))
    rules = {"name": ["r" * 40] * 3000, "id": list(range(3000))}
    rules.update(priority=[1] * 3000, action=["allow"] * 3000)
    manifest = codec.from_json({**base, "rules": rules})
    raw = codec.encode(manifest)
    assert len(raw) > 64 * 1024
    fd = create_meta_map(raw)
    try:
        assert read_meta_fd(fd) == manifest
        with pytest.raises(KernelError, match="Operation not permitted"):
            libbpf.map_update(fd, bytes(4), bytes(libbpf.map_info(fd).value_size))
        libbpf.obj_pin(fd, pin)
    finally:
        os.close(fd)
    try:
        assert read_meta_map(pin) == manifest
    finally:
        pin.unlink()


def test_a_format_1_meta_map_reads_as_columns() -> None:
    """A policy pinned by an older fw-load (rules and slots as rows) keeps working."""
    rows = {
        **loader_fixtures.BASE_MANIFEST,
        "format": 1,
        "rules": [
            {"id": 1, "name": "b", "priority": 20, "action": "deny"},
            {"id": 0, "name": "a", "priority": 10, "action": "allow"},
        ],
        "counters": {
            "map": "fwc_counters",
            "slots": [{"index": 1, "name": "rule:b"}, {"index": 0, "name": "rule:a"}],
        },
        "fw_load": {"generation": 1},
    }
    fd = create_meta_map(json.dumps(rows).encode())
    try:
        manifest = read_meta_fd(fd)
    finally:
        os.close(fd)
    assert manifest.format == 2 and manifest.fw_load == LoaderRecord(generation=1)
    assert manifest.rules.rows() == [RuleEntry(0, "a", 10, "allow"), RuleEntry(1, "b", 20, "deny")]
    assert manifest.counters.slots.pairs() == [(0, "rule:a"), (1, "rule:b")]


def test_meta_reader_refuses_other_maps() -> None:
    cases = [
        ("fwc_counters", b'{"format": 1}'),
        ("fwc_meta", b"\xff not json"),
        ("fwc_meta", b"[]"),
    ]
    for name, content in cases:
        fd = libbpf.map_create(libbpf.BPF_MAP_TYPE_ARRAY, name, 4, 4096, 1)
        try:
            libbpf.map_update(fd, bytes(4), content.ljust(4096, b"\0"))
            with pytest.raises(LoaderError, match=r"manifest map|no valid manifest"):
                read_meta_fd(fd)
        finally:
            os.close(fd)


def test_compiled_policy_loads_and_counts(tmp_path: Path) -> None:
    from fwc.compiler.cli import main as fwc_main

    out = tmp_path / "edge-web.o"
    policy = Path(__file__).resolve().parent.parent / "policies" / "edge-web.yaml"
    assert fwc_main(["compile", str(policy), "-o", str(out), "--no-cache"]) == 0
    with LoadedProgram.load(out) as prog:
        slots = {name: index for index, name in prog.spec.counter_slots}
        arp = bytes(6) * 2 + b"\x08\x06" + bytes(28)
        run = prog.test_run(arp, repeat=4)
        assert run.retval in (XDP_DROP, XDP_PASS)
        counts = prog.counters()
        assert len(counts) == prog.spec.map("fwc_counters").max_entries
        assert sum(p for p, _ in counts) == 4
        assert counts[slots["non_ip"]][0] == 4


def test_unprivileged_load_says_what_is_missing(tmp_path: Path) -> None:
    shared = Path(tempfile.mkdtemp(prefix="fwc-unpriv-"))
    try:
        shared.chmod(0o755)
        artifact = shared / "fw.o"
        artifact.write_bytes(loader_fixtures.build(tmp_path).read_bytes())
        artifact.chmod(0o644)
        code = (
            "import sys\n"
            "from fwc.loader.kernel.program import KernelError, LoadedProgram\n"
            "try:\n"
            f"    LoadedProgram.load({str(artifact)!r})\n"
            "except KernelError as exc:\n"
            "    print(exc.errno, exc, sep='|')\n"
        )
        nobody = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "--inh-caps=-all"]
        done = subprocess.run(
            [*nobody, sys.executable, "-c", code], capture_output=True, text=True, check=True
        )
        errno_text, message = done.stdout.strip().split("|")
        assert errno_text == "1"
        assert message.endswith("(loading BPF programs needs root, or CAP_BPF with CAP_PERFMON)")
    finally:
        shutil.rmtree(shared)


def test_frames_shorter_than_an_ethernet_header_are_refused_clearly(artifact: Path) -> None:
    with LoadedProgram.load(artifact) as prog:
        for frame in (b"", bytes(13)):
            with pytest.raises(KernelError, match="at least 14 bytes") as caught:
                prog.test_run(frame)
            assert caught.value.errno == 22
        assert prog.test_run(bytes(14)).retval == XDP_PASS
