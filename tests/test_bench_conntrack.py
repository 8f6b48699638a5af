"""The connection-state macro benchmark compares like with like: fwc (XDP and its conntrack
table), iptables-legacy and nftables each give the reference evaluator's verdict, with the
state conntrack gives each frame, on every frame the bench times, before and after the
timed rounds, with real conntrack entries in a private namespace."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parent.parent / "bench"
sys.path.insert(0, str(BENCH))

import bench_conntrack  # noqa: E402

from fwc.compiler.oracle.evaluate import XDP_PASS, evaluate  # noqa: E402


def test_every_state_and_verdict_is_in_the_checked_frames() -> None:
    policy = bench_conntrack.load_policy()
    frames = bench_conntrack.checked_frames(8)
    states = {state for _, state in frames}
    assert states == {"new", "established", "related", "invalid"}
    verdicts = {evaluate(policy, f, ct_state=s).xdp_action == XDP_PASS for f, s in frames}
    assert verdicts == {True, False}
    protocols = {f[23] for f, s in frames if s == "established"}  # the IPv4 protocol byte
    assert protocols == {6, 17}


def test_the_bench_runs_and_every_filter_agrees_with_the_evaluator(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code = bench_conntrack.main(["--seconds", "0.2", "--rounds", "1", "--flows", "8"])
    out = capsys.readouterr()
    assert code == 0, out.err
    assert "fwc, iptables, nftables agree with the reference evaluator" in out.out
    assert "after the rounds, fwc, iptables, nftables again agree" in out.out
    for name in ("established", "closed-syn", "junk", "server-mix"):
        for flt in ("none", "xdp-pass", "fwc", "iptables", "nftables"):
            assert any(line.split()[:2] == [name, flt] for line in out.out.splitlines())
