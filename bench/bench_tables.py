"""Tables strategy benchmark: ns/packet against rule count, beside parse-only and constants.

Run as root: `.venv/bin/python bench/bench_tables.py --sizes 10,100,1000,10000`.
Every program of the run is loaded first, then timed in interleaved rounds (BPF_PROG_TEST_RUN),
so the ratios come from one run on the same, shared machine; each ratio is also given per round
(median and range). Also prints precompute and compile times (clang included), `fwc compile
--strategy tables` as its own process (wall time and peak RSS), load+seed time, artifact size,
the kernel memory of the maps, and the load average.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from fwc.compiler.backend import constants
from fwc.compiler.backend.build import compile_policy
from fwc.compiler.backend.render import headers
from fwc.compiler.backend.tables.classify import build_tables, class_counts
from fwc.compiler.backend.toolchain import find_toolchain
from fwc.compiler.oracle.evaluate import evaluate
from fwc.compiler.policy.findings import Severity
from fwc.loader.kernel import libbpf
from fwc.loader.kernel.program import LoadedProgram

BENCH = Path(__file__).resolve().parent
LABELS = ("first", "late", "default")


@dataclass
class Subject:
    """One loaded program and the frames it is timed on."""

    name: str
    rules: int
    prog_fd: int
    frames: list[tuple[str, bytes]]
    samples: dict[str, list[float]] = field(default_factory=dict)
    info: dict[str, object] = field(default_factory=dict)

    def time_round(self, repeat: int) -> None:
        per: dict[str, list[int]] = {}
        for label, frame in self.frames:
            _, ns, _ = libbpf.prog_test_run(self.prog_fd, frame, repeat)
            per.setdefault(label, []).append(ns)
        for label, values in per.items():
            self.samples.setdefault(label, []).append(statistics.fmean(values))
        every = [v for values in per.values() for v in values]
        self.samples.setdefault("all", []).append(statistics.fmean(every))

    def ns(self, label: str) -> float:
        """The median over rounds of the mean over frames: robust to a busy neighbour."""
        return statistics.median(self.samples[label])

    def ratio(self, other: Subject, floor: Subject | None = None) -> tuple[float, float, float]:
        """This program's cost over `other`'s, per round (the rounds interleave them): the
        median and the range. With `floor`, both less the floor program's cost that round."""
        mine, theirs = self.samples["all"], other.samples["all"]
        if floor is not None:
            mine = [a - f for a, f in zip(mine, floor.samples["all"], strict=True)]
            theirs = [b - f for b, f in zip(theirs, floor.samples["all"], strict=True)]
        per_round = [a / b for a, b in zip(mine, theirs, strict=True)]
        return statistics.median(per_round), min(per_round), max(per_round)


def parse_only(work: Path) -> libbpf.Object:
    for name, text in headers().items():
        (work / name).write_bytes(text)
    source = BENCH / "tables_parse_only.c"
    (work / source.name).write_bytes(source.read_bytes())
    clang = find_toolchain().clang
    command = [str(clang), "-O2", "-g", "-target", "bpf", "-c", source.name, "-o", "parse.o"]
    subprocess.run(command, cwd=work, check=True)
    obj = libbpf.Object((work / "parse.o").read_bytes())
    obj.load()
    return obj


def compile_command(policy_yaml: str, work: Path, n: int) -> dict[str, object]:
    """`fwc compile --strategy tables` of the policy as its own process: wall time and the
    process's peak RSS (its clang and objcopy children are smaller)."""
    source = work / f"policy-{n}.yaml"
    source.write_text(policy_yaml)
    command = [sys.executable, "-m", "fwc.compiler.cli", "compile", "--strategy", "tables"]
    command += ["--no-cache", "--no-gate", "-o", str(work / f"cmd-{n}.o"), str(source)]
    t0 = time.monotonic()
    child = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(child.pid, 0)
    wall = time.monotonic() - t0
    if status != 0:
        assert child.stderr is not None
        raise SystemExit(f"fwc compile of {n} rules failed: {child.stderr.read().decode()}")
    return {"compile_cmd_s": round(wall, 2), "compile_cmd_rss_mb": round(usage.ru_maxrss / 1024)}


def map_memory(prog: LoadedProgram) -> int:
    """Bytes the kernel charges for every map the artifact created (bpftool's bytes_memlock),
    those the program does not read included."""
    total = 0
    for spec in prog.spec.maps:
        map_id = libbpf.map_info(prog.map_fd(spec.name)).id
        out = subprocess.run(
            ["bpftool", "-j", "map", "show", "id", str(map_id)],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        total += int(json.loads(out).get("bytes_memlock", 0))
    return total


def main(argv: Sequence[str] | None = None) -> int:
    sys.path.insert(0, str(BENCH))
    from policies import load_policy, make_policy_yaml, make_traffic

    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--sizes", default="10,100,1000,10000")
    ap.add_argument("--repeat", type=int, default=20000)
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--per-label", type=int, default=4)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--json", type=Path, help="also write the results here")
    args = ap.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",")]

    subjects: list[Subject] = []
    programs: list[LoadedProgram] = []
    loads = [os.getloadavg()[0]]
    with tempfile.TemporaryDirectory(prefix="fwc-bench-tables-") as tmp:
        work = Path(tmp)
        parse = parse_only(work)
        try:
            for n in sizes:
                text = make_policy_yaml(n, args.seed)
                policy = load_policy(text)
                frames = make_traffic(policy, args.seed, args.per_label)
                command_info = compile_command(text, work, n)
                t0 = time.monotonic()
                tables = build_tables(policy.rules)
                precompute_s = time.monotonic() - t0
                out = work / f"tables-{n}.o"
                t0 = time.monotonic()
                result = compile_policy(policy, output=out, strategy="tables", cache_dir=None)
                compile_s = time.monotonic() - t0
                t0 = time.monotonic()
                prog = LoadedProgram.load(out)
                load_s = time.monotonic() - t0
                programs.append(prog)
                wrong = sum(
                    prog.test_run(frame).retval != evaluate(policy, frame).xdp_action
                    for _, frame in frames
                )
                info: dict[str, object] = {
                    "precompute_s": round(precompute_s, 2),
                    "compile_s": round(compile_s, 2),
                    "load_seed_s": round(load_s, 2),
                    "artifact_bytes": out.stat().st_size,
                    "map_memlock_bytes": map_memory(prog),
                    "insns": result.manifest["program"]["insn_count"],
                    "wrong_verdicts": wrong,
                    **command_info,
                    **class_counts(tables),
                }
                subjects.append(Subject("tables", n, prog.prog_fd, frames, info=info))
                print(f"tables {n:>6} rules: {json.dumps(info)}", flush=True)
                if n == sizes[0]:
                    subjects.append(Subject("parse-only", 0, parse.program_fd("fwc_xdp"), frames))
                    fields = parse.program_fd("fwc_xdp_fields")
                    subjects.append(Subject("parse-all", 0, fields, frames))
                    subjects.append(Subject("pass", 0, parse.program_fd("fwc_xdp_pass"), frames))
                refused = [f for f in constants.findings(policy) if f.severity is Severity.ERROR]
                if refused:
                    print(f"constants {n:>6} rules: refused ({refused[0].id})", flush=True)
                    continue
                cout = work / f"constants-{n}.o"
                t0 = time.monotonic()
                try:
                    compile_policy(policy, output=cout, strategy="constants", cache_dir=None)
                    ccompile = time.monotonic() - t0
                    cprog = LoadedProgram.load(cout)
                except Exception as exc:  # the comparison must not stop the tables run
                    print(f"constants {n:>6} rules: failed: {exc}", flush=True)
                    continue
                programs.append(cprog)
                subjects.append(
                    Subject(
                        "constants",
                        n,
                        cprog.prog_fd,
                        frames,
                        info={"compile_s": round(ccompile, 2)},
                    )
                )
            for _ in range(args.rounds):
                loads.append(os.getloadavg()[0])
                for subject in subjects:
                    subject.time_round(args.repeat)
            loads.append(os.getloadavg()[0])
        finally:
            for prog in programs:
                prog.close()
            parse.close()

    base = next(s for s in subjects if s.name == "parse-only").ns("all")
    full = next(s for s in subjects if s.name == "parse-all").ns("all")
    small = {s.name: s.ns("all") for s in subjects if s.rules == sizes[0]}
    print(
        f"\nBPF_PROG_TEST_RUN, repeat {args.repeat}, median of {args.rounds} rounds; "
        "ns/packet (first / late / default / all), ratios on 'all'"
    )
    print(
        f"{'program':<11} {'rules':>6} {'first':>8} {'late':>8} {'default':>8} {'all':>8}"
        f" {'x parse':>8} {'x p-all':>8} {'x 10rule':>8}"
    )
    rows = []
    for s in subjects:
        cells = " ".join(f"{s.ns(label):>8.1f}" for label in (*LABELS, "all"))
        vs_small = s.ns("all") / small[s.name] if s.name in small else float("nan")
        ratios = f"{s.ns('all') / base:>8.2f} {s.ns('all') / full:>8.2f} {vs_small:>8.2f}"
        print(f"{s.name:<11} {s.rules:>6} {cells} {ratios}")
        rows.append(
            {
                "program": s.name,
                "rules": s.rules,
                **{label: round(s.ns(label), 1) for label in (*LABELS, "all")},
                **s.info,
            }
        )
    summary = goals(subjects, sizes)
    print(
        f"load average (1 min) {min(loads):.2f}-{max(loads):.2f} during the run, "
        f"{os.cpu_count()} CPUs"
    )
    if args.json:
        args.json.write_text(
            json.dumps({"rows": rows, "goals": summary, "load": loads}, indent=2) + "\n"
        )
    return 0


def goals(subjects: Sequence[Subject], sizes: Sequence[int]) -> dict[str, object]:
    """Issue 15's per-packet and memory goals, from this run: per-round ratios (median, range)
    and, per size, the compile command's peak RSS and the maps' kernel memory."""
    by = {(s.name, s.rules): s for s in subjects}
    parse, full, empty = by["parse-only", 0], by["parse-all", 0], by["pass", 0]
    out: dict[str, object] = {}
    small, large = sizes[0], sizes[-1]
    pairs = [(by["tables", large], parse, 3.0), (by["tables", large], full, 2.0)]
    if ("constants", small) in by:
        pairs.insert(0, (by["tables", small], by["constants", small], 1.5))
    for floor, title in ((None, "on 'all'"), (empty, "less the empty program's cost")):
        print(f"\nper-round ratios {title} (median, range):")
        for mine, theirs, goal in pairs:
            r = mine.ratio(theirs, floor)
            key = f"tables_over_{theirs.name}" + ("_less_pass" if floor else "")
            out[key] = {"rules": mine.rules, "ratio": [round(x, 3) for x in r]}
            print(
                f"  tables at {mine.rules} rules / {theirs.name}: "
                f"{r[0]:.2f} ({r[1]:.2f}-{r[2]:.2f}), goal <= {goal:g}"
            )
    print("memory per size: `fwc compile --strategy tables` peak RSS (goal < 500 MB at 50k), maps:")
    memory = {}
    for s in subjects:
        if s.name == "tables":
            rss, maps = s.info["compile_cmd_rss_mb"], s.info["map_memlock_bytes"]
            assert isinstance(maps, int)
            memory[s.rules] = {"compile_rss_mb": rss, "map_memlock_mb": round(maps / 2**20, 1)}
            print(
                f"  {s.rules:>6} rules: compile {s.info['compile_cmd_s']} s, {rss} MB peak RSS; "
                f"maps {maps / 2**20:.1f} MB (both generations)"
            )
    out["memory"] = memory
    return out


if __name__ == "__main__":
    raise SystemExit(main())
