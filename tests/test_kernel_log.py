"""log: true rules in the kernel: events through the ring buffer, the per-CPU cap, the CLI."""

from __future__ import annotations

import itertools
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from fwc.compiler.backend.build import BuildResult, compile_policy
from fwc.compiler.backend.options import CompileOptions
from fwc.compiler.oracle import frames as fr
from fwc.loader.cli import main
from fwc.loader.kernel import libbpf
from fwc.loader.kernel.events import Event, decode
from fwc.loader.kernel.meta import create_meta_map
from fwc.loader.kernel.program import LoadedProgram
from fwc.loader.kernel.ringbuf import RingBuffer
from fwc.loader.node.pins import PolicyPins
from fwc.loader.reader.artifact import read_artifact
from tests.compile_helpers import policy_of

pytestmark = pytest.mark.kernel

POLICY = """\
name: logged
default_action: deny
rules:
  - {name: allow_web, priority: 10, action: allow, protocol: tcp, destination_ports: [443],
     log: true}
  - {name: drop_dns, priority: 20, action: deny, protocol: udp, destination_ports: [53], log: true}
  - {name: ping, priority: 30, action: allow, protocol: icmpv6, icmp_types: [128], log: true}
  - {name: quiet, priority: 40, action: allow, protocol: udp}
"""
FW_LOAD = Path(sys.executable).parent / "fw-load"
NAMES = ["allow_web", "drop_dns", "ping", "quiet"]


def frame(**fields: object) -> bytes:
    return fr.build_frame(fr.fields_from_mapping(fields))


WEB = frame(proto="tcp", src="192.0.2.7", dst="198.51.100.1", sport=40000, dport=443, flags="SYN")
DNS = frame(proto="udp", src="2001:db8::7", dst="2001:db8::53", sport=5353, dport=53)
PING = frame(proto="icmpv6", src="fd00::1", dst="fd00::2", icmp_type=128)
QUIET = frame(proto="udp", dport=9)

# (frame, the event it gives: rule, verdict, src, dst, sport, dport, protocol, flags, icmp type)
LOGGED: list[tuple[bytes, tuple[object, ...]]] = [
    (WEB, ("allow_web", "pass", "192.0.2.7", "198.51.100.1", 40000, 443, 6, 0x02, None)),
    (DNS, ("drop_dns", "drop", "2001:db8::7", "2001:db8::53", 5353, 53, 17, None, None)),
    (PING, ("ping", "pass", "fd00::1", "fd00::2", None, None, 58, None, 128)),
]


def fields(e: Event) -> tuple[object, ...]:
    return (e.rule, e.verdict, e.src, e.dst, e.sport, e.dport, e.protocol, e.tcp_flags, e.icmp_type)


@pytest.fixture
def one_cpu() -> Iterator[None]:
    """The per-CPU cap is per CPU: keep every BPF_PROG_TEST_RUN of the test on one."""
    before = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {min(before)})
    try:
        yield
    finally:
        os.sched_setaffinity(0, before)


def build(tmp_path: Path, dry_run: bool = False, log_rate: int = 100) -> BuildResult:
    options = CompileOptions(log_rate=log_rate)
    return compile_policy(
        policy_of(POLICY), output=tmp_path / "fw.o", dry_run=dry_run, options=options
    )


def events_of(prog: LoadedProgram) -> list[Event]:
    records: list[bytes] = []
    with RingBuffer(prog.map_fd("fwc_events"), records.append) as ring:
        ring.consume()
    return [decode(r, NAMES) for r in records]


def test_events_carry_the_verdicts(tmp_path: Path, one_cpu: None) -> None:
    with LoadedProgram.load(build(tmp_path).path) as prog:
        for f in [WEB, QUIET, DNS, PING, QUIET]:
            prog.test_run(f)
        events = events_of(prog)
    assert [fields(e) for e in events] == [want for _, want in LOGGED]
    assert [e.family for e in events] == [4, 6, 6]
    assert events[0].time_ns <= events[1].time_ns <= events[2].time_ns


def test_dry_run_reports_would_drop(tmp_path: Path, one_cpu: None) -> None:
    with LoadedProgram.load(build(tmp_path, dry_run=True).path) as prog:
        assert prog.test_run(DNS).retval == 2
        assert [e.verdict for e in events_of(prog)] == ["would_drop"]


def test_per_cpu_cap(tmp_path: Path, one_cpu: None) -> None:
    result = build(tmp_path, log_rate=3)
    assert result.manifest["log_rate"] == 3
    with LoadedProgram.load(result.path) as prog:
        for _ in range(10):
            assert prog.test_run(WEB).retval == 2
        assert len(events_of(prog)) == 3
        counters = prog.counters()
    assert counters[0][0] == 10  # the cap limits events, never verdicts or counts


def test_event_maps_in_manifest_match_elf(tmp_path: Path) -> None:
    result = build(tmp_path)
    maps = {m["name"]: m for m in result.manifest["maps"]}
    assert maps["fwc_events"]["type"] == "ringbuf"
    assert maps["fwc_log_window"]["type"] == "percpu_array"
    spec = read_artifact(result.path)  # cross-checks the manifest against libbpf's ELF
    assert spec.map("fwc_events").max_entries == maps["fwc_events"]["max_entries"]
    plain = compile_policy(
        policy_of(POLICY.replace("log: true", "log: false")), output=tmp_path / "plain.o"
    )
    assert plain.manifest["log_rate"] == 0
    assert "fwc_events" not in {m["name"] for m in plain.manifest["maps"]}


_SEQ = itertools.count()


@pytest.fixture
def pin_root() -> Iterator[Path]:
    root = Path(f"/sys/fs/bpf/fwc-test-events-{os.getpid()}-{next(_SEQ)}")
    root.mkdir()
    try:
        yield root
    finally:
        shutil.rmtree(root)


def pin_policy(result: BuildResult, prog: LoadedProgram, root: Path) -> None:
    """What `fw-load apply` leaves behind for `events`: the map pins and the manifest map."""
    pins = PolicyPins(root / "logged")
    prog.pin(pins.dir)
    meta = create_meta_map(json.dumps(result.manifest).encode())
    try:
        libbpf.obj_pin(meta, pins.meta)
    finally:
        os.close(meta)


def test_cli_follows_pinned_events(
    tmp_path: Path, pin_root: Path, one_cpu: None, capsys: pytest.CaptureFixture[str]
) -> None:
    result = build(tmp_path)
    with LoadedProgram.load(result.path) as prog:
        pin_policy(result, prog, pin_root)
        for f in [WEB, QUIET, DNS, PING]:
            prog.test_run(f)
    args = ["events", "--pin-root", str(pin_root), "--policy", "logged"]
    assert main([*args, "--json", "--count", "2"]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [(e["rule"], e["src"], e["dport"]) for e in lines] == [
        ("allow_web", "192.0.2.7", 443),
        ("drop_dns", "2001:db8::7", 53),
    ]
    # wall-clock time: the events happened within the last minute
    for event in lines:
        assert 0 <= time.time_ns() - event["time_unix_ns"] < 60e9
        assert event["time"].startswith(time.strftime("%Y-%m-%dT", time.gmtime()))
    # the third event is still in the ring; then nothing comes until the deadline
    assert main([*args, "--duration", "0.3"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 1 and "pass rule ping icmpv6 fd00::1 -> fd00::2 type 128" in out[0]
    assert out[0].startswith(time.strftime("%Y-%m-%dT", time.gmtime()))


def test_cli_errors_are_one_line(
    tmp_path: Path, pin_root: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["events", "--pin-root", str(pin_root)]) == 2
    assert "no policy is applied" in capsys.readouterr().err
    plain = compile_policy(policy_of("name: logged\nrules: []\n"), output=tmp_path / "p.o")
    with LoadedProgram.load(plain.path) as prog:
        pin_policy(plain, prog, pin_root)
    assert main(["events", "--pin-root", str(pin_root)]) == 2
    err = capsys.readouterr().err
    assert "has no rule with `log: true`" in err and err.count("\n") == 1


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_cli_stops_cleanly_on_signals(tmp_path: Path, pin_root: Path, sig: int) -> None:
    result = build(tmp_path)
    with LoadedProgram.load(result.path) as prog:
        pin_policy(result, prog, pin_root)
        prog.test_run(WEB)
    command = [str(FW_LOAD), "events", "--pin-root", str(pin_root), "--json"]
    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE) as child:
        assert child.stdout is not None
        first = child.stdout.readline()  # the event already waiting: the loop is running
        child.send_signal(sig)
        out, err = child.communicate(timeout=10)
    assert json.loads(first)["rule"] == "allow_web"
    assert (child.returncode, out, err) == (0, b"", b"")
