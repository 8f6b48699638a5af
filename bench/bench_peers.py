"""fwc beside the expert netfilter baselines, side by side in one run, on the same frames.

Each baseline (bench/baselines.py) is first checked against the reference evaluator on
every distinct frame of the mixes; fwc's program too (BPF_PROG_TEST_RUN). Then, in
interleaved rounds, every filter gets two measurements per mix:

- live: ns/packet of the whole receive path with frames written by BPF_PROG_RUN in
  live-frame mode straight into the veth (bench/live.py), so no AF_PACKET copy hides
  the filter. The receiver runs an XDP program in every case (veth needs one to take
  redirected frames): fwc, or one that only passes (netfilter then filters the skb).
  The classifier's own cost is the measured time less that of the same hook's trivial
  verdicts at the same drop share: XDP pass/drop for fwc, an nft ingress `drop` for the
  nft designs, an iptables raw `DROP` for ipset. For fwc the kernel's BPF run-time
  statistics give it directly too.
- trafgen: packets per second trafgen gets through the veth (AF_PACKET, as
  macro_veth.py), netfilter without any XDP program.

Run as root: `python bench/bench_peers.py [--rules 1000,10000] [--rounds 3]`.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

import live  # noqa: E402
from baselines import BUILDERS, Baseline  # noqa: E402
from macro_veth import _compile_fwc, measure, mix, trafgen_config, xdp_attached  # noqa: E402
from netfilter import baseline_loaded, passed_frames  # noqa: E402
from netns import RX_DEV, TX_DEV, Pair, sh, veth_pair  # noqa: E402

from fwc.compiler.oracle.evaluate import XDP_PASS, evaluate  # noqa: E402
from fwc.compiler.policy.ir import Family, Policy  # noqa: E402
from fwc.loader.kernel import libbpf  # noqa: E402
from policies import load_policy, make_packets, make_policy_yaml  # noqa: E402

PROBE = 2000  # frames of a first, untimed look at a filter's speed
LIVE_BUDGET_S = 2.0


@dataclass(frozen=True)
class Filter:
    """How one filter is set up: the receiver's XDP program and the netfilter text, if any.

    `reference` names the trivial filters on the same hook (pass, drop) its classifier
    cost is measured against.
    """

    name: str
    xdp: str  # "fwc", "live_pass" or "live_drop"
    netfilter: str = ""  # a BUILDERS key, or "nft-drop" / "ipt-drop"
    reference: tuple[str, str] = ("xdp-pass", "xdp-drop")
    trafgen: bool = True
    live: bool = True


FILTERS = {
    f.name: f
    for f in (
        Filter("none", "", trafgen=True, live=False),
        Filter("xdp-pass", "live_pass"),
        Filter("xdp-drop", "live_drop", trafgen=False),
        Filter("fwc", "fwc"),
        Filter("ipset", "live_pass", "ipset", ("xdp-pass", "ipt-drop")),
        Filter("nft-vmap", "live_pass", "nft-vmap", ("xdp-pass", "nft-drop")),
        Filter("nft-seg", "live_pass", "nft-seg", ("xdp-pass", "nft-drop")),
        Filter("nft-drop", "live_pass", "nft-drop", ("xdp-pass", "nft-drop"), trafgen=False),
        Filter("ipt-drop", "live_pass", "ipt-drop", ("xdp-pass", "ipt-drop"), trafgen=False),
    )
}
_NFT_DROP = f"""table netdev fwc_bench {{
\tchain ingress {{
\t\ttype filter hook ingress device "{RX_DEV}" priority 0; policy accept;
\t\tmeta protocol {{ ip, ip6 }} drop
\t}}
}}
"""


def _ipt_drop() -> tuple[tuple[Family, str], ...]:
    text = (
        "*raw\n:PREROUTING ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n:FWC - [0:0]\n"
        f"-A PREROUTING -i {RX_DEV} -j FWC\n-A FWC -j DROP\nCOMMIT\n"
    )
    return ((Family.IPV4, text), (Family.IPV6, text))


REFERENCES = {
    "nft-drop": Baseline("nft-drop", "every IP frame dropped at netdev ingress", nft=_NFT_DROP),
    "ipt-drop": Baseline(
        "ipt-drop", "every IP frame dropped in raw PREROUTING", iptables=_ipt_drop()
    ),
}


@dataclass
class Cell:
    live_ns: list[float] = field(default_factory=list)
    pps: list[float] = field(default_factory=list)
    prog_ns: list[float] = field(default_factory=list)  # BPF run-time statistics


class LiveFramesRefused(RuntimeError):
    """The kernel refuses BPF_PROG_RUN's live-frame mode, so the live columns cannot be
    measured on this machine."""


class Sender:
    """bench/live.py serving in the sender's namespace."""

    def __init__(self, pair: Pair, obj: Path) -> None:
        command = [sys.executable, str(BENCH / "live.py"), str(obj), TX_DEV]
        self.proc = subprocess.Popen(
            ["ip", "netns", "exec", pair.tx, *command],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        if self._line() != "ready":
            raise RuntimeError("the live-frame sender did not start")

    def _line(self) -> str:
        assert self.proc.stdout is not None
        return self.proc.stdout.readline().strip()

    def send(self, frames_file: Path, count: int) -> float:
        """ns per packet of sending `count` frames of the mix through the receiver."""
        assert self.proc.stdin is not None
        self.proc.stdin.write(f"{frames_file} {count}\n")
        self.proc.stdin.flush()
        line = self._line()
        if line.startswith("refused "):
            raise LiveFramesRefused(f"this kernel refuses live-frame mode: {line[8:]}")
        answer = line.split()
        if len(answer) != 2:
            raise RuntimeError("the live-frame sender failed (see its stderr)")
        return int(answer[0]) / int(answer[1])

    def close(self) -> None:
        if self.proc.stdin:
            self.proc.stdin.close()
        self.proc.wait(timeout=30)


def _prog_stats(prog_id: int) -> tuple[int, int]:
    doc = json.loads(sh("bpftool", "prog", "show", "id", str(prog_id), "--json"))
    return int(doc.get("run_time_ns", 0)), int(doc.get("run_cnt", 0))


@contextlib.contextmanager
def _bpf_stats() -> Iterator[None]:
    """The kernel's BPF run-time statistics, on while the block runs (BPF_ENABLE_STATS)."""
    fd = libbpf.enable_run_time_stats()
    try:
        yield
    finally:
        os.close(fd)


def _check_fwc(obj: Path, policy: Policy, frames: Sequence[bytes]) -> None:
    from fwc.loader.kernel.program import LoadedProgram

    prog = LoadedProgram.load(obj)
    try:
        for i, frame in enumerate(frames):
            got = libbpf.prog_test_run(prog.prog_fd, frame)[0]
            if got != evaluate(policy, frame).xdp_action:
                raise RuntimeError(f"fwc: frame {i} gets {got}, the reference evaluator differs")
    finally:
        prog.close()


def _verify(pair: Pair, baseline: Baseline, policy: Policy, frames: Sequence[bytes]) -> None:
    want = [evaluate(policy, f).xdp_action == XDP_PASS for f in frames]
    with baseline_loaded(pair, baseline) as seconds:
        got = passed_frames(pair, frames)
    wrong = [i for i, (g, w) in enumerate(zip(got, want, strict=True)) if g != w]
    if wrong:
        raise RuntimeError(f"{baseline.name}: frames {wrong[:8]} differ from the reference")
    print(
        f"  {baseline.name}: {baseline.summary}; loads in {seconds:.1f} s; "
        f"all {len(frames)} frames agree with the reference evaluator",
        flush=True,
    )


@dataclass(frozen=True)
class Setup:
    pair: Pair
    work: Path
    sender: Sender
    baselines: dict[str, Baseline]
    mixes: dict[str, Path]  # trafgen configs
    frames: dict[str, Path]  # live frames files
    count: int
    seconds: float


def _run_cell(setup: Setup, flt: Filter, cells: dict[tuple[str, str], Cell]) -> None:
    baseline = setup.baselines.get(flt.netfilter) or REFERENCES.get(flt.netfilter)
    with contextlib.ExitStack() as stack:
        if baseline is not None:
            stack.enter_context(baseline_loaded(setup.pair, baseline))
        if flt.trafgen and setup.seconds > 0:
            with contextlib.ExitStack() as xdp:
                if baseline is None and flt.xdp:
                    xdp.enter_context(_attach(setup, flt.xdp))
                for name, conf in setup.mixes.items():
                    counter = "xdp" if baseline is None and flt.xdp else "none"
                    m = measure(setup.pair, conf, setup.seconds, counter)
                    cells.setdefault((flt.name, name), Cell()).pps.append(m.processed_pps)
        if not flt.live:
            return
        with _attach(setup, flt.xdp) as prog_id:
            for name, frames in setup.frames.items():
                # a slow filter gets fewer frames: about LIVE_BUDGET_S of sending per cell
                probe = setup.sender.send(frames, PROBE)
                count = min(setup.count, max(PROBE, int(LIVE_BUDGET_S * 1e9 / probe)))
                ns = setup.sender.send(frames, count)
                cells.setdefault((flt.name, name), Cell()).live_ns.append(ns)
            if baseline is None:
                with _bpf_stats():
                    for name, frames in setup.frames.items():
                        before = _prog_stats(prog_id)
                        setup.sender.send(frames, max(1000, setup.count // 4))
                        after = _prog_stats(prog_id)
                        runs = max(1, after[1] - before[1])
                        cells[flt.name, name].prog_ns.append((after[0] - before[0]) / runs)


def _attach(setup: Setup, xdp: str) -> contextlib.AbstractContextManager[int]:
    if xdp == "fwc":
        return xdp_attached(setup.pair, "fwc", setup.work / "fw.o", setup.work)
    return xdp_attached(setup.pair, xdp, setup.work / "live.o", setup.work)


def run_size(args: argparse.Namespace, n_rules: int, filters: Sequence[Filter]) -> None:
    text = make_policy_yaml(n_rules, args.seed)
    policy = load_policy(text)
    packets = make_packets(policy, args.seed, per_label=64)
    mixes = {
        "drop-heavy": mix(packets, policy, 0.9, args.frames),
        "pass-heavy": mix(packets, policy, 0.1, args.frames),
    }
    share = {
        name: sum(evaluate(policy, f).xdp_action != XDP_PASS for f in frames) / len(frames)
        for name, frames in mixes.items()
    }
    distinct = list(dict.fromkeys(f for frames in mixes.values() for f in frames))
    cells: dict[tuple[str, str], Cell] = {}
    loads: list[float] = []
    with tempfile.TemporaryDirectory(prefix="fwc-peers-") as tmp, veth_pair() as pair:
        work = Path(tmp)
        sh("ip", "netns", "exec", pair.rx, "ethtool", "-K", RX_DEV, "gro", "off", check=False)
        strategy = _compile_fwc(policy, work / "fw.o", args.strategy)
        _check_fwc(work / "fw.o", policy, distinct)
        print(
            f"{n_rules} rules: fwc strategy {strategy}; checking every design on "
            f"{len(distinct)} distinct frames",
            flush=True,
        )
        print(f"  fwc: all {len(distinct)} frames agree with the reference evaluator")
        wanted = {f.netfilter for f in filters if f.netfilter in BUILDERS}
        baselines = {name: BUILDERS[name](policy, RX_DEV) for name in sorted(wanted)}
        for baseline in baselines.values():
            _verify(pair, baseline, policy, distinct)
        obj = live.build(work)
        sender = Sender(pair, obj)
        try:
            setup = Setup(
                pair,
                work,
                sender,
                baselines,
                {n: _write(work / f"{n}.cfg", trafgen_config(f)) for n, f in mixes.items()},
                {
                    n: _write(work / f"{n}.hex", "\n".join(x.hex() for x in f))
                    for n, f in mixes.items()
                },
                args.count,
                args.seconds,
            )
            # Rounds interleave the filters, so a noisy neighbour hits all of them alike.
            for _ in range(args.rounds):
                loads.append(os.getloadavg()[0])
                for flt in filters:
                    _run_cell(setup, flt, cells)
        finally:
            sender.close()
    _report(n_rules, strategy, filters, cells, share, loads, args)


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def _spread(values: Sequence[float], fmt: str) -> str:
    if not values:
        return "-"
    mid = statistics.median(values)
    return f"{mid:{fmt}} [{min(values):{fmt}}-{max(values):{fmt}}]"


def _classifier(
    flt: Filter, mix_name: str, cells: dict[tuple[str, str], Cell], drop: float
) -> float | None:
    """Measured ns less the same hook's trivial verdicts at the same drop share."""
    passing, dropping = (cells.get((ref, mix_name)) for ref in flt.reference)
    ours = cells.get((flt.name, mix_name))
    if flt.name in flt.reference or not (ours and passing and dropping):
        return None
    if not (ours.live_ns and passing.live_ns and dropping.live_ns):
        return None
    base = drop * statistics.median(dropping.live_ns) + (1 - drop) * statistics.median(
        passing.live_ns
    )
    return statistics.median(ours.live_ns) - base


def _report(
    n_rules: int,
    strategy: str,
    filters: Sequence[Filter],
    cells: dict[tuple[str, str], Cell],
    share: dict[str, float],
    loads: Sequence[float],
    args: argparse.Namespace,
) -> None:
    print()
    print(
        f"{n_rules} rules, fwc {strategy}; {args.rounds} rounds; live up to {args.count} "
        f"frames per cell; trafgen {args.seconds:g} s per cell; {os.cpu_count()} CPUs; "
        f"load average {min(loads):.2f}-{max(loads):.2f} at the rounds' starts"
    )
    print("median [min-max] across rounds")
    print(
        f"{'filter':<9} {'mix':<10} {'live ns/pkt':>22} {'classifier ns':>13} "
        f"{'BPF stats ns':>18} {'x fwc':>6} {'trafgen kpps':>18} {'x fwc':>6}"
    )
    for mix_name in share:
        ours = cells.get(("fwc", mix_name))
        for flt in filters:
            cell = cells.get((flt.name, mix_name))
            if cell is None:
                continue
            cls = _classifier(flt, mix_name, cells, share[mix_name])
            x_live = x_pps = "-"
            if ours is not None and ours.live_ns and cell.live_ns:
                x_live = f"{statistics.median(ours.live_ns) / statistics.median(cell.live_ns):.2f}"
            if ours is not None and cell.pps and ours.pps:
                x_pps = f"{statistics.median(cell.pps) / statistics.median(ours.pps):.2f}"
            print(
                f"{flt.name:<9} {mix_name:<10} {_spread(cell.live_ns, '.0f'):>22} "
                f"{'-' if cls is None else f'{cls:.0f}':>13} "
                f"{_spread(cell.prog_ns, '.1f'):>18} {x_live:>6} "
                f"{_spread([p / 1000 for p in cell.pps], '.0f'):>18} {x_pps:>6}"
            )
    print(
        "x fwc: the filter's packet rate over fwc's (live: fwc ns / filter ns); "
        "drop share " + ", ".join(f"{k} {v:.0%}" for k, v in share.items())
    )
    print(flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rules", default="1000,10000", help="comma list of policy sizes")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument(
        "--count", type=int, default=300000, help="live frames per cell (fewer: 2 s at most)"
    )
    ap.add_argument("--seconds", type=float, default=2.0, help="trafgen per cell (0: skip)")
    ap.add_argument("--frames", type=int, default=200, help="distinct frames per mix")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--strategy", default="auto", help="fwc compile strategy")
    ap.add_argument(
        "--filters", default=",".join(FILTERS), help="comma list of: " + " ".join(FILTERS)
    )
    args = ap.parse_args(argv)
    if os.geteuid() != 0:
        print("bench_peers: needs root (namespaces, XDP, netfilter)", file=sys.stderr)
        return 2
    for tool in ("trafgen", "iptables-legacy-restore", "ipset", "nft", "ethtool", "bpftool"):
        if subprocess.run(["which", tool], capture_output=True).returncode != 0:
            print(f"bench_peers: {tool} missing; run scripts/bench-setup.sh", file=sys.stderr)
            return 2
    try:
        names = args.filters.split(",")
        unknown = [n for n in names if n not in FILTERS]
        if unknown:
            raise RuntimeError(f"unknown filter {unknown[0]!r}")
        # the references every classifier estimate needs
        needed = {r for n in names for r in FILTERS[n].reference}
        filters = [f for f in FILTERS.values() if f.name in set(names) | needed]
        for n_rules in (int(x) for x in args.rules.split(",")):
            start = time.monotonic()
            run_size(args, n_rules, filters)
            print(f"({n_rules} rules took {time.monotonic() - start:.0f} s)\n", flush=True)
    except (RuntimeError, ValueError, libbpf.KernelError) as exc:
        print(f"bench_peers: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
