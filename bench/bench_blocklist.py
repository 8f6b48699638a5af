"""Blocklist benchmark: a policy with one `deny src: $blocklist` rule over N CIDRs (both
families, nested), beside a 10-rule policy.

Run as root: `.venv/bin/python bench/bench_blocklist.py [--sizes 100000,1000000]`.
Prints, per size: `fwc check` and `fwc compile` (wall seconds and peak RSS from
/usr/bin/time -v, range over rounds), load+seed time, the maps' kernel memory; then
ns/packet by BPF_PROG_TEST_RUN of the blocklist programs and the 10-rule tables program,
timed in interleaved rounds on the same frames' kinds, with every verdict checked against
the reference evaluator. The machine's load average is printed before and after.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import os
import random
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from bench_tables import Subject, map_memory

from fwc.compiler.backend.build import compile_policy
from fwc.compiler.oracle.evaluate import evaluate
from fwc.compiler.oracle.frames import PacketFields, build_frame
from fwc.compiler.policy.ir import IPPROTO_TCP, IPPROTO_UDP, AddressRange, Family, Policy
from fwc.loader.kernel.program import LoadedProgram

BENCH = Path(__file__).resolve().parent
FWC = Path(sys.executable).parent / "fwc"
KINDS = ("blocked", "passed", "default")


def timed(argv: list[str]) -> tuple[float, float, int, float]:
    """Wall seconds, peak RSS in MB, exit code and CPU seconds (user + system, children
    included: what a busy machine does not inflate) of one command, by /usr/bin/time -v."""
    t0 = time.monotonic()
    run = subprocess.run(["/usr/bin/time", "-v", *argv], capture_output=True, text=True)
    wall = time.monotonic() - t0

    def field(name: str) -> float:
        match = re.search(rf"{name}: ([0-9.]+)", run.stderr)
        return float(match.group(1)) if match else float("nan")

    rss = field(r"Maximum resident set size \(kbytes\)") / 1024
    cpu = field(r"User time \(seconds\)") + field(r"System time \(seconds\)")
    return wall, rss, run.returncode, cpu


def spread(values: list[float]) -> str:
    return f"{min(values):.1f}" if len(values) == 1 else f"{min(values):.1f}-{max(values):.1f}"


def frames_for(policy: Policy, seed: int, per_kind: int) -> list[tuple[str, bytes]]:
    """Blocked sources (inside sampled entries, both families) to a service port, clean
    sources to a service (passed), and clean sources to a closed port (the default)."""
    from blocklist import CLEAN_V4, CLEAN_V6

    rng = random.Random(seed)
    entries = dict(policy.sets)["blocklist"]
    out: list[tuple[str, bytes]] = []
    dst = {Family.IPV4: int(ipaddress.ip_address("192.0.2.1")), Family.IPV6: 1 << 125}
    for entry in rng.sample(entries, per_kind):
        assert isinstance(entry, AddressRange)
        src = rng.randint(entry.first, entry.last)
        fields = PacketFields(entry.family, IPPROTO_TCP, src, dst[entry.family], dport=443)
        out.append(("blocked", build_frame(fields)))
    for i in range(2 * per_kind):
        family = Family.IPV4 if i % 2 else Family.IPV6
        pool = CLEAN_V4 if family is Family.IPV4 else CLEAN_V6
        src = int(pool.network_address) + 1 + rng.getrandbits(16)
        kind, proto, port = (
            ("passed", IPPROTO_UDP, 53) if i < per_kind else ("default", IPPROTO_TCP, 8081)
        )
        out.append((kind, build_frame(PacketFields(family, proto, src, dst[family], dport=port))))
    return out


def main(argv: Sequence[str] | None = None) -> int:
    sys.path.insert(0, str(BENCH))
    from blocklist import make_blocklist_yaml

    from policies import load_policy, make_policy_yaml, make_traffic

    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--sizes", default="100000,1000000")
    ap.add_argument("--cli-rounds", type=int, default=2, help="runs of each fwc command")
    ap.add_argument("--repeat", type=int, default=20000)
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--per-kind", type=int, default=8)
    ap.add_argument("--json", type=Path, help="also write the results here")
    args = ap.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",")]
    print(f"load average at start: {os.getloadavg()}", flush=True)

    rows: list[dict[str, object]] = []
    subjects: list[Subject] = []
    programs: list[LoadedProgram] = []
    with tempfile.TemporaryDirectory(prefix="fwc-bench-blocklist-") as tmp:
        work = Path(tmp)
        try:
            small = load_policy(make_policy_yaml(10, 1))
            out = work / "rules-10.o"
            compile_policy(small, output=out, strategy="tables", cache_dir=None)
            prog = LoadedProgram.load(out)
            programs.append(prog)
            frames = make_traffic(small, 1, args.per_kind)
            subjects.append(Subject("10 rules", 10, prog.prog_fd, frames))
            for n in sizes:
                text = make_blocklist_yaml(n)
                path = work / f"blocklist-{n}.yaml"
                path.write_text(text)
                artifact = work / f"blocklist-{n}.o"
                checks = [timed([str(FWC), "check", str(path)]) for _ in range(args.cli_rounds)]
                compiles = [
                    timed(
                        [
                            str(FWC),
                            "compile",
                            "--no-cache",
                            "--strategy",
                            "tables",
                            "-o",
                            str(artifact),
                            str(path),
                        ]
                    )
                    for _ in range(args.cli_rounds)
                ]
                failed = [c for c in checks + compiles if c[2] != 0]
                if failed:
                    print(f"{n}: fwc exited {failed[0][2]}", flush=True)
                    return 1
                t0 = time.monotonic()
                prog = LoadedProgram.load(artifact)
                load_s = time.monotonic() - t0
                programs.append(prog)
                policy = load_policy(text)
                frames = frames_for(policy, n, args.per_kind)
                wrong = sum(
                    prog.test_run(f).retval != evaluate(policy, f).xdp_action for _, f in frames
                )
                row: dict[str, object] = {
                    "entries": n,
                    "check_s": [round(c[0], 1) for c in checks],
                    "check_cpu_s": [round(c[3], 1) for c in checks],
                    "check_rss_mb": [round(c[1]) for c in checks],
                    "compile_s": [round(c[0], 1) for c in compiles],
                    "compile_cpu_s": [round(c[3], 1) for c in compiles],
                    "compile_rss_mb": [round(c[1]) for c in compiles],
                    "load_seed_s": round(load_s, 2),
                    "artifact_mb": round(artifact.stat().st_size / 2**20, 1),
                    "map_memlock_mb": round(map_memory(prog) / 2**20, 1),
                    "wrong_verdicts": wrong,
                }
                rows.append(row)
                print(f"blocklist {n:>8}: {json.dumps(row)}", flush=True)
                subjects.append(Subject(f"{n} set", n, prog.prog_fd, frames))
            for _ in range(args.rounds):
                for subject in subjects:
                    subject.time_round(args.repeat)
        finally:
            for prog in programs:
                prog.close()
    print(f"load average at end: {os.getloadavg()}")
    print(f"\nfwc commands ({args.cli_rounds} runs each, min-max)")
    columns = (
        "check_s",
        "check_cpu_s",
        "check_rss_mb",
        "compile_s",
        "compile_cpu_s",
        "compile_rss_mb",
    )
    print(f"{'entries':>9} " + " ".join(f"{c:>15}" for c in columns))
    for row in rows:
        cells = [spread(row[k]) for k in columns]  # type: ignore[arg-type]
        print(f"{row['entries']:>9} " + " ".join(f"{c:>15}" for c in cells))
    base = subjects[0].ns("all")
    print(
        f"\nBPF_PROG_TEST_RUN, repeat {args.repeat}, median of {args.rounds} rounds (min-max of"
        " the round means in brackets); ns/packet"
    )
    for s in subjects:
        labels = ("first", "late", "default") if s.rules == 10 else KINDS
        cells = "  ".join(f"{label} {s.ns(label):.1f}" for label in labels)
        every = s.samples["all"]
        print(
            f"{s.name:<14} {cells}  all {s.ns('all'):.1f} [{min(every):.1f}-{max(every):.1f}]"
            f"  x 10 rules {s.ns('all') / base:.2f}"
        )
        for row in rows:
            if row["entries"] == s.rules:
                row["ns"] = {label: round(s.ns(label), 1) for label in (*labels, "all")}
                row["x_10_rules"] = round(s.ns("all") / base, 2)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
