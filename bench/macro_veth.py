"""Macro benchmark: trafgen floods a veth pair between two private namespaces; the receiver
filters with fwc's XDP program, the rule loop, linear iptables or nftables chains, the
expert netfilter designs of bench/baselines.py, or nothing.

Run as root: `python bench/macro_veth.py` (needs scripts/bench-setup.sh). Frames go
only to the veth peer inside the benchmark's own namespaces.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

from baselines import BUILDERS  # noqa: E402
from netfilter import baseline_loaded, passed_frames  # noqa: E402
from netns import RX_DEV, TX_DEV, Pair, sh, veth_pair, xdp_drops  # noqa: E402
from ruleset import iptables_restore, nft_ruleset  # noqa: E402

from fwc.compiler.policy.ir import Action, Family, Policy  # noqa: E402
from policies import Packet, load_policy, make_packets, make_policy_yaml, verdict  # noqa: E402


def trafgen_config(frames: Sequence[bytes]) -> str:
    """One trafgen packet block per frame; trafgen sends them round robin."""
    return "".join("{ " + ", ".join(f"0x{b:02x}" for b in f) + " }\n" for f in frames)


def mix(packets: Sequence[Packet], policy: Policy, drop_share: float, size: int) -> list[bytes]:
    """`size` frames, `drop_share` of them dropped by the policy, from every label."""
    drops = [p.frame for p in packets if verdict(policy, p) is Action.DENY]
    passes = [p.frame for p in packets if verdict(policy, p) is Action.ALLOW]
    n_drop = round(size * drop_share)
    out = [drops[i % len(drops)] for i in range(n_drop)]
    out += [passes[i % len(passes)] for i in range(size - n_drop)]
    # Interleave so every burst holds both kinds.
    return [f for pair in zip(out[::2], out[1::2], strict=False) for f in pair] + out[
        len(out) // 2 * 2 :
    ]


def _counter(pair_ns: str, dev: str, name: str) -> int:
    out = sh("ip", "netns", "exec", pair_ns, "cat", f"/sys/class/net/{dev}/statistics/{name}")
    return int(out)


def _softnet_drops() -> int:
    """Backlog drops on every CPU (/proc/net/softnet_stat, second column)."""
    text = Path("/proc/net/softnet_stat").read_text()
    return sum(int(line.split()[1], 16) for line in text.splitlines())


@dataclass(frozen=True)
class Measurement:
    sent_pps: float  # what trafgen got onto the veth
    processed_pps: float  # sent minus what queues dropped before the filter saw it
    dropped_pps: float | None  # the filter's own drop counter, where it has one


def measure(pair: Pair, conf: Path, seconds: float, drop_counter: str) -> Measurement:
    before_tx = _counter(pair.tx, TX_DEV, "tx_packets")
    before_txd = _counter(pair.tx, TX_DEV, "tx_dropped")
    before_sn = _softnet_drops()
    before_drop = _drops(pair, drop_counter)
    start = time.monotonic()
    run = subprocess.run(
        [
            "timeout",
            "-s",
            "INT",
            str(seconds),
            "ip",
            "netns",
            "exec",
            pair.tx,
            "trafgen",
            "--dev",
            TX_DEV,
            "--conf",
            str(conf),
            "--cpus",
            "1",
            "--no-sock-mem",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    elapsed = time.monotonic() - start
    if "packets outgoing" not in run.stdout + run.stderr:
        raise RuntimeError(f"trafgen: {(run.stderr or run.stdout).strip()[-300:]}")
    sent = _counter(pair.tx, TX_DEV, "tx_packets") - before_tx
    lost = (_counter(pair.tx, TX_DEV, "tx_dropped") - before_txd) + (_softnet_drops() - before_sn)
    after_drop = _drops(pair, drop_counter)
    dropped = None if before_drop is None or after_drop is None else after_drop - before_drop
    return Measurement(
        sent / elapsed,
        max(0, sent - lost) / elapsed,
        None if dropped is None else dropped / elapsed,
    )


def _drops(pair: Pair, kind: str) -> int | None:
    if kind == "xdp":
        return xdp_drops(pair)
    if kind == "iptables":
        total = 0
        for tool in ("iptables-legacy-save", "ip6tables-legacy-save"):
            for line in pair.rx_sh(tool, "-c", "-t", "raw").splitlines():
                if line.startswith("[") and line.endswith("-j DROP") and " -A FWC " in line:
                    total += int(line[1 : line.index(":")])
        return total
    return None


# ---- the filters --------------------------------------------------------------------

HELPER = """
import ctypes, socket, sys
from fwc.loader.kernel import libbpf
sys.path.insert(0, {bench!r})
kind, path, dev = sys.argv[1:4]
if kind == "fwc":
    from fwc.loader.kernel.program import LoadedProgram
    prog = LoadedProgram.load(path)
    fd = prog.prog_fd
elif kind.startswith("live_"):
    from pathlib import Path
    prog = libbpf.Object(Path(path).read_bytes())
    prog.load()
    fd = prog.program_fd(kind)
else:
    from pathlib import Path
    from policies import load_policy
    from rule_loop import FOR_LOOP, BPF_LOOP, RuleLoop
    policy = load_policy(Path(path).read_text())
    variant = BPF_LOOP if kind == "bpf_loop" else FOR_LOOP
    prog = RuleLoop.for_policy(policy, variant, Path(sys.argv[4]))
    fd = prog.prog_fd
link = libbpf.link_create(fd, socket.if_nametoindex(dev), flags=4)  # XDP_FLAGS_DRV_MODE
print("attached", libbpf.prog_info(fd).id, flush=True)
sys.stdin.read()
"""


@contextlib.contextmanager
def xdp_attached(pair: Pair, kind: str, path: Path, work: Path) -> Iterator[int]:
    """A helper process in the receiver namespace holds the XDP link until we close its stdin;
    yields the program's id. `kind`: fwc, rule-loop, bpf_loop, or a program of live.c."""
    code = HELPER.format(bench=str(BENCH))
    proc = subprocess.Popen(
        [
            "ip",
            "netns",
            "exec",
            pair.rx,
            sys.executable,
            "-c",
            code,
            kind,
            str(path),
            RX_DEV,
            str(work),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        line = proc.stdout.readline() if proc.stdout else ""
        if not line.startswith("attached "):
            _, err = proc.communicate(timeout=30)
            raise RuntimeError(f"cannot attach {kind}: {err.strip()[-300:]}")
        yield int(line.split()[1])
    finally:
        if proc.stdin:
            proc.stdin.close()
        proc.wait(timeout=30)


@contextlib.contextmanager
def iptables_loaded(pair: Pair, policy: Policy) -> Iterator[None]:
    pair.rx_sh("iptables-legacy-restore", input=iptables_restore(policy, RX_DEV, Family.IPV4))
    pair.rx_sh("ip6tables-legacy-restore", input=iptables_restore(policy, RX_DEV, Family.IPV6))
    try:
        yield
    finally:
        empty = "*raw\n:PREROUTING ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\nCOMMIT\n"
        pair.rx_sh("iptables-legacy-restore", input=empty)
        pair.rx_sh("ip6tables-legacy-restore", input=empty)


@contextlib.contextmanager
def nft_loaded(pair: Pair, policy: Policy) -> Iterator[None]:
    pair.rx_sh("nft", "-f", "-", input=nft_ruleset(policy, RX_DEV))
    try:
        yield
    finally:
        pair.rx_sh("nft", "delete", "table", "netdev", "fwc_bench")


# ---- main ---------------------------------------------------------------------------


def _compile_fwc(policy: Policy, out: Path, strategy: str) -> str:
    """Compile with `strategy`; when that build fails or the verifier refuses it, use tables."""
    from fwc.compiler.backend.build import BuildError, compile_policy
    from fwc.loader.kernel.libbpf import KernelError
    from fwc.loader.kernel.program import LoadedProgram

    try:
        result = compile_policy(policy, output=out, strategy=strategy)
        LoadedProgram.load(out).close()
    except (BuildError, KernelError) as exc:
        if strategy == "tables":
            raise RuntimeError(f"fwc compile: {exc}") from exc
        print(f"note: strategy {strategy} failed ({str(exc)[-90:]}); using tables", flush=True)
        result = compile_policy(policy, output=out, strategy="tables")
    return result.plan.strategy


def main(argv: Sequence[str] | None = None) -> int:
    try:
        return _main(argv)
    except RuntimeError as exc:
        print(f"macro_veth: {exc}", file=sys.stderr)
        return 2


def _main(argv: Sequence[str] | None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--rules", type=int, default=1000)
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--frames", type=int, default=200, help="distinct frames per mix")
    ap.add_argument("--strategy", default="auto", help="fwc compile strategy")
    ap.add_argument("--rounds", type=int, default=3, help="cells per filter; the median counts")
    ap.add_argument(
        "--filters",
        default="none,fwc,rule-loop,iptables,nftables",
        help="comma list of: none fwc rule-loop bpf_loop iptables nftables "
        "(linear chains) ipset nft-vmap nft-seg (bench/baselines.py)",
    )
    args = ap.parse_args(argv)
    if os.geteuid() != 0:
        print("macro_veth: needs root (namespaces, XDP, iptables)", file=sys.stderr)
        return 2
    for tool in ("trafgen", "iptables-legacy-restore", "nft", "ethtool"):
        if subprocess.run(["which", tool], capture_output=True).returncode != 0:
            print(f"macro_veth: {tool} missing; run scripts/bench-setup.sh", file=sys.stderr)
            return 2

    text = make_policy_yaml(args.rules, args.seed)
    policy = load_policy(text)
    packets = make_packets(policy, args.seed, per_label=64)
    mixes = {
        "drop-heavy": mix(packets, policy, 0.9, args.frames),
        "pass-heavy": mix(packets, policy, 0.1, args.frames),
    }
    filters = args.filters.split(",")
    runs: dict[tuple[str, str], list[Measurement]] = {}
    with tempfile.TemporaryDirectory(prefix="fwc-macro-") as tmp, veth_pair() as pair:
        work = Path(tmp)
        policy_file = work / "policy.yaml"
        policy_file.write_text(text)
        strategy = ""
        if "fwc" in filters:
            strategy = _compile_fwc(policy, work / "fw.o", args.strategy)
        for name, frames in mixes.items():
            (work / f"{name}.cfg").write_text(trafgen_config(frames))
        _check_baselines(pair, policy, [f for frames in mixes.values() for f in frames], filters)
        print(
            f"{args.rules} rules ({len(policy.rules)} in policy), fwc strategy {strategy or '-'}, "
            f"{args.seconds:g} s per cell, {args.frames} distinct frames per mix, "
            f"{os.cpu_count()} CPUs"
        )
        # Rounds interleave the filters, so a noisy neighbour on the shared CPUs hits all alike.
        for _ in range(args.rounds):
            for flt in filters:
                with _filter(flt, pair, policy, work):
                    for name in mixes:
                        counter = "xdp" if flt in ("fwc", "rule-loop", "bpf_loop") else flt
                        m = measure(pair, work / f"{name}.cfg", args.seconds, counter)
                        runs.setdefault((flt, name), []).append(m)
    rows = {key: _median(ms) for key, ms in runs.items()}
    _table(
        rows, filters, list(mixes), {n: _drop_share(policy, packets, m) for n, m in mixes.items()}
    )
    return 0


def _check_baselines(
    pair: Pair, policy: Policy, frames: Sequence[bytes], filters: Sequence[str]
) -> None:
    """Every expert baseline gives the reference evaluator's verdict on every frame."""
    from fwc.compiler.oracle.evaluate import XDP_PASS, evaluate

    distinct = list(dict.fromkeys(frames))
    want = [evaluate(policy, f).xdp_action == XDP_PASS for f in distinct]
    for name in filters:
        if name not in BUILDERS:
            continue
        baseline = BUILDERS[name](policy, RX_DEV)
        with baseline_loaded(pair, baseline):
            got = passed_frames(pair, distinct)
        if got != want:
            raise RuntimeError(f"{name} differs from the reference evaluator; not timed")
        print(f"{name}: {baseline.summary}; {len(distinct)} frames agree with the reference")


def _median(ms: Sequence[Measurement]) -> Measurement:
    return sorted(ms, key=lambda m: m.processed_pps)[len(ms) // 2]


def _drop_share(policy: Policy, packets: Sequence[Packet], frames: Sequence[bytes]) -> float:
    action = {p.frame: verdict(policy, p) for p in packets}
    return sum(action[f] is Action.DENY for f in frames) / len(frames)


@contextlib.contextmanager
def _filter(name: str, pair: Pair, policy: Policy, work: Path) -> Iterator[None]:
    if name == "none":
        yield
    elif name == "fwc":
        with xdp_attached(pair, "fwc", work / "fw.o", work):
            yield
    elif name in ("rule-loop", "bpf_loop"):
        with xdp_attached(pair, name, work / "policy.yaml", work):
            yield
    elif name == "iptables":
        with iptables_loaded(pair, policy):
            yield
    elif name == "nftables":
        with nft_loaded(pair, policy):
            yield
    elif name in BUILDERS:
        with baseline_loaded(pair, BUILDERS[name](policy, RX_DEV)):
            yield
    else:
        raise SystemExit(f"macro_veth: unknown filter {name!r}")


def _table(
    rows: dict[tuple[str, str], Measurement],
    filters: Sequence[str],
    mixes: Sequence[str],
    drop_share: dict[str, float],
) -> None:
    print()
    print(
        f"{'filter':<10} {'mix':<11} {'processed pps':>14} {'pass pps':>10} {'drop pps':>10} "
        f"{'x none':>7} {'x fwc':>6}"
    )
    for name in mixes:
        for flt in filters:
            m = rows[flt, name]
            base = rows.get(("none", name))
            ours = rows.get(("fwc", name))
            dropped = (
                m.dropped_pps if m.dropped_pps is not None else m.processed_pps * drop_share[name]
            )
            if flt == "none":
                dropped = 0.0
            passed = m.processed_pps - dropped
            x_none = f"{m.processed_pps / base.processed_pps:.2f}" if base else "-"
            x_fwc = f"{m.processed_pps / ours.processed_pps:.2f}" if ours else "-"
            print(
                f"{flt:<10} {name:<11} {m.processed_pps:>14,.0f} {passed:>10,.0f} "
                f"{dropped:>10,.0f} {x_none:>7} {x_fwc:>6}"
            )
    print("drop share: " + ", ".join(f"{k} {v:.0%}" for k, v in drop_share.items()))


if __name__ == "__main__":
    sys.exit(main())
