"""rate_limit rules in the kernel: GCRA buckets per rule and source, refill, dry-run, map size."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import pytest

from fwc.compiler.backend.build import compile_policy
from fwc.compiler.backend.options import CompileOptions
from fwc.compiler.oracle import frames as fr
from fwc.compiler.oracle.evaluate import XDP_DROP, XDP_PASS, evaluate
from fwc.compiler.oracle.ratelimit import RateLimiter
from fwc.compiler.policy.ir import Policy
from fwc.loader.kernel.program import LoadedProgram
from fwc.loader.reader.artifact import read_artifact
from tests.compile_helpers import policy_of

pytestmark = pytest.mark.kernel

POLICY = """\
name: limited
default_action: deny
rules:
  - {{name: limit_dns, priority: 10, action: rate_limit, protocol: udp, destination_ports: [53],
     rate_limit_pps: {pps}, rate_limit_burst: {burst}}}
  - {{name: allow_web, priority: 20, action: allow, protocol: tcp, destination_ports: [443]}}
"""


def dns(src: str) -> bytes:
    return fr.build_frame(fr.fields_from_mapping({"proto": "udp", "src": src, "dport": 53}))


A, B, V6 = dns("192.0.2.1"), dns("192.0.2.2"), dns("2001:db8::1")
V6_NEIGHBOUR = dns("2001:db8::2")
WEB = fr.build_frame(fr.fields_from_mapping({"proto": "tcp", "src": "192.0.2.1", "dport": 443}))
P, D = XDP_PASS, XDP_DROP


def limited(pps: int, burst: int) -> Policy:
    return policy_of(POLICY.format(pps=pps, burst=burst))


def send(prog: LoadedProgram, frames: list[bytes]) -> list[int]:
    return [prog.test_run(f).retval for f in frames]


# (what the row shows, frames sent in one go, XDP action of each) with pps=1, burst=3
BURST_TABLE: list[tuple[str, list[bytes], list[int]]] = [
    ("three from one source, then none", [A] * 4, [P, P, P, D]),
    ("another source has its own bucket", [A, B, B, B, B], [P, P, P, P, D]),
    ("a rule that does not limit is not limited", [A] * 3 + [WEB] * 5, [P, P, P] + [P] * 5),
    ("ipv6 sources: one bucket per /128", [V6] * 4 + [V6_NEIGHBOUR], [P, P, P, D, P]),
    ("ipv4 and ipv6 never share", [A] * 3 + [V6] * 3 + [A, V6], [P] * 6 + [D, D]),
]


@pytest.mark.parametrize(
    ("frames", "actions"), [row[1:] for row in BURST_TABLE], ids=[row[0] for row in BURST_TABLE]
)
def test_burst_then_drop(frames: list[bytes], actions: list[int], tmp_path: Path) -> None:
    policy = limited(pps=1, burst=3)
    result = compile_policy(policy, output=tmp_path / "fw.o")
    oracle = RateLimiter()
    with LoadedProgram.load(result.path) as prog:
        got = []
        for frame in frames:
            # the program's clock is CLOCK_MONOTONIC, as time.monotonic_ns() reads it; a
            # whole table runs in milliseconds, far from a refill at 1 pps
            want = evaluate(policy, frame, buckets=oracle, now_ns=time.monotonic_ns())
            got.append(prog.test_run(frame).retval)
            assert got[-1] == want.xdp_action, got
        counters = prog.counters()
    assert got == actions
    limited_frames = [f for f in frames if f is not WEB]
    assert counters[0] == (len(limited_frames), sum(map(len, limited_frames)))


def test_refill_after_a_second(tmp_path: Path) -> None:
    result = compile_policy(limited(pps=2, burst=3), output=tmp_path / "fw.o")
    with LoadedProgram.load(result.path) as prog:
        assert send(prog, [A] * 4) == [P, P, P, D]
        start = time.monotonic()
        time.sleep(1.1)
        after = send(prog, [A] * 3)
        elapsed = time.monotonic() - start
    # 1.1 s at 2 pps gives back 2 tokens (the third would need 1.5 s)
    assert elapsed < 1.45, f"the machine stalled {elapsed:.2f} s; the expectation needs < 1.45 s"
    assert after == [P, P, D]


def test_dry_run_counts_would_drop(tmp_path: Path) -> None:
    policy = limited(pps=1, burst=2)
    result = compile_policy(policy, output=tmp_path / "fw.o", dry_run=True)
    with LoadedProgram.load(result.path) as prog:
        assert send(prog, [A] * 5) == [P] * 5
        counters = prog.counters()
    slots = result.manifest["counters"]["slots"]["name"]
    assert counters[slots.index("rule:limit_dns")] == (5, 5 * len(A))
    assert counters[slots.index("would_drop")] == (3, 3 * len(A))


def test_bucket_map_size_in_manifest_matches_elf(tmp_path: Path) -> None:
    options = CompileOptions(rate_limit_buckets=1000)
    result = compile_policy(limited(1, 3), output=tmp_path / "fw.o", options=options)
    assert result.manifest["rate_limit_buckets"] == 1000
    spec = read_artifact(result.path)  # cross-checks every manifest map against libbpf's ELF
    bucket_map = spec.map("fwc_buckets")
    assert (bucket_map.type, bucket_map.max_entries) == ("lru_hash", 1000)
    assert (bucket_map.key_size, bucket_map.value_size) == (24, 8)
    with LoadedProgram.load(result.path) as prog:
        assert send(prog, [A] * 4) == [P, P, P, D]


def test_no_bucket_map_without_rate_limit_rules(tmp_path: Path) -> None:
    policy = policy_of("name: plain\ndefault_action: allow\nrules: []\n")
    result = compile_policy(policy, output=tmp_path / "fw.o")
    assert result.manifest["rate_limit_buckets"] == 0
    assert [m["name"] for m in result.manifest["maps"]] == ["fwc_counters", "fwc_scratch"]


def test_two_cpus_never_spend_a_token_twice(tmp_path: Path) -> None:
    """Both CPUs drain one bucket at once: exactly `burst` packets pass, as the CAS promises."""
    burst, runs = 100_000, 200_000
    cpus = sorted(os.sched_getaffinity(0))[:2]
    assert len(cpus) == 2, "this test needs two CPUs"
    result = compile_policy(limited(pps=1, burst=burst), output=tmp_path / "fw.o", dry_run=True)
    windows: dict[int, tuple[int, int]] = {}
    with LoadedProgram.load(result.path) as prog:

        def drain(cpu: int) -> None:
            os.sched_setaffinity(0, {cpu})  # pid 0: this thread only
            start = time.monotonic_ns()
            prog.test_run(A, repeat=runs)
            windows[cpu] = (start, time.monotonic_ns())

        threads = [threading.Thread(target=drain, args=(cpu,)) for cpu in cpus]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        counters = prog.counters()
    (a_start, a_end), (b_start, b_end) = windows.values()
    assert max(a_start, b_start) < min(a_end, b_end), "the two CPUs did not run at once"
    slots = result.manifest["counters"]["slots"]["name"]
    decided, dropped = counters[0][0], counters[slots.index("would_drop")][0]
    elapsed_s = (max(a_end, b_end) - min(a_start, b_start)) // 1_000_000_000
    assert decided == 2 * runs
    # at 1 pps a bucket gets one token back per whole second the runs took
    assert burst <= decided - dropped <= burst + elapsed_s
