"""Times `fwc check` on a generated 10,000-rule policy, with and without the Rego gate.

Run: .venv/bin/python bench/check_bench.py [--rules N] [--repeat K] [--profile]

`fwc check` runs as its own process, as a user runs it. Wall times depend on what else
the machine runs; CPU times (that process and the engine's child) do much less, so both
are printed. The goal: under 5 s with the bundled invariants on a quiet machine.
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import io
import json
import os
import pstats
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from fwc.compiler.cli import main
from fwc.compiler.gate import rego
from fwc.compiler.gate import regopy as rego_regopy
from fwc.compiler.gate.input import policy_doc
from fwc.compiler.policy import schema, semantic
from fwc.compiler.policy.normalize import normalize
from fwc.compiler.policy.source import load_file


def generate(rules: int, seed: int = 7) -> str:
    """A realistic large policy: distinct v4 and v6 CIDRs, ports, ranges and sets."""
    rnd = random.Random(seed)
    lines = [
        "version: 1",
        "name: bench-large",
        "default_action: deny",
        "sets:",
        '  mgmt_nets: ["10.20.0.0/16", "fd00:20::/48"]',
        '  web_ports: [80, 443, "8000-8099"]',
        "rules:",
        "  - name: allow_ssh_from_mgmt",
        "    priority: 0",
        "    action: allow",
        "    protocol: tcp",
        '    source_cidrs: ["$mgmt_nets"]',
        "    destination_ports: [22]",
        "    description: Operators reach the box over SSH.",
    ]
    for i in range(1, rules):
        kind = i % 4
        if kind == 0:
            cidr = f"2001:db8:{i >> 8:x}:{i & 0xFF:x}::/64"
        else:
            cidr = f"10.{(i >> 16) & 0xFF}.{(i >> 8) & 0xFF}.{i & 0xFF}/32"
        action = ("allow", "deny", "rate_limit")[i % 3]
        protocol = ("tcp", "udp")[i % 2]
        lo = rnd.randrange(1024, 60000)
        lines += [
            f"  - name: rule_{i:05d}",
            f"    priority: {i}",
            f"    action: {action}",
            f"    protocol: {protocol}",
            f'    source_cidrs: ["{cidr}"]',
        ]
        if i % 5 == 0:
            lines.append('    destination_ports: ["$web_ports"]')
        else:
            lines.append(f'    destination_ports: [{lo}, "{lo + 1}-{lo + 50}"]')
        if action == "rate_limit":
            lines.append(f"    rate_limit_pps: {rnd.randrange(100, 10000)}")
        lines.append(f"    description: Generated rule {i}.")
    return "\n".join(lines) + "\n"


def timed(fn: Callable[[], object], repeat: int) -> float:
    """The median wall time of `fn` over `repeat` runs."""
    return timed_cpu(fn, repeat)[0]


def _cpu() -> float:
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.process_time() + children.ru_utime + children.ru_stime


def timed_cpu(fn: Callable[[], object], repeat: int) -> tuple[float, float]:
    """The median wall time and median CPU time (with waited-for children) of `fn`."""
    walls, cpus = [], []
    for _ in range(repeat):
        start, cpu = time.perf_counter(), _cpu()
        fn()
        walls.append(time.perf_counter() - start)
        cpus.append(_cpu() - cpu)
    return statistics.median(walls), statistics.median(cpus)


def run_check(path: Path, *extra: str) -> int:
    """`fwc check` in this process (for the profile)."""
    with contextlib.redirect_stdout(io.StringIO()):
        return main(["check", "--format", "json", str(path), *extra])


def run_cli(path: Path, *extra: str) -> int:
    """`fwc check` as its own process."""
    command = [sys.executable, "-m", "fwc.compiler.cli", "check", "--format", "json"]
    done = subprocess.run([*command, str(path), *extra], capture_output=True, check=False)
    return done.returncode


def stages(path: Path) -> None:
    """Where the time goes, stage by stage, without Rego."""
    doc = None

    def load() -> None:
        nonlocal doc
        doc, _ = load_file(path)

    figures = {"load": timed(load, 1)}
    assert doc is not None
    loaded = doc
    figures["schema"] = timed(lambda: schema.validate(loaded), 1)
    figures["normalize"] = timed(lambda: normalize(loaded), 1)
    figures["semantic"] = timed(lambda: semantic.check(loaded), 1)
    for name, seconds in figures.items():
        print(f"  {name:<10} {seconds:7.3f} s")


def rego_stages(path: Path) -> None:
    """The Rego gate stage by stage, in this process (CPU s, then wall s)."""
    doc, _ = load_file(path)
    assert doc is not None
    policy, _ = normalize(doc)
    assert policy is not None
    loaded = rego._load(rego.RegoOptions())
    modules = [m for m in loaded.modules if not rego._is_test_file(m)]
    interpreter = rego_regopy._load(modules, json.loads(loaded.data))
    query = rego.gate_query(rego.gate_rules(modules))
    state: dict[str, Any] = {}

    def stage(name: str, fn: Callable[[], object]) -> None:
        start, cpu = time.perf_counter(), time.process_time()
        state[name] = fn()
        cpu, wall = time.process_time() - cpu, time.perf_counter() - start
        print(f"  {name:<30} {cpu:6.3f} s CPU {wall:6.3f} s")

    stage("input document", lambda: policy_doc(policy))
    stage("engine input tree", lambda: rego_regopy.engine_input(state["input document"]))
    stage("engine takes the input", lambda: interpreter.set_input(state["engine input tree"]))
    stage("query", lambda: rego_regopy._query(interpreter, query))


def main_bench() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rules", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--profile", action="store_true", help="print the top functions")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "bench-large.yaml"
        path.write_text(generate(args.rules), encoding="utf-8")
        size = path.stat().st_size
        print(f"policy: {args.rules} rules, {size / 1e6:.1f} MB")
        stages(path)
        print("Rego gate stages (regopy, in process):")
        rego_stages(path)
        print(f"load average {os.getloadavg()[0]:.2f} on {len(os.sched_getaffinity(0))} cores")
        no_rego, no_rego_cpu = timed_cpu(lambda: run_cli(path, "--no-rego"), args.repeat)
        print(
            f"fwc check --no-rego: {no_rego:.3f} s wall, {no_rego_cpu:.3f} s CPU "
            f"(median of {args.repeat})"
        )
        rc = run_cli(path)
        if rc == 2:
            print("fwc check with Rego: the Rego gate failed (exit 2); see `fwc check` on the file")
        else:
            with_rego, with_rego_cpu = timed_cpu(lambda: run_cli(path), args.repeat)
            print(
                f"fwc check with Rego: {with_rego:.3f} s wall, {with_rego_cpu:.3f} s CPU "
                f"(exit {rc}; median of {args.repeat})"
            )
            print(
                f"Rego share: {with_rego - no_rego:.3f} s wall, "
                f"{with_rego_cpu - no_rego_cpu:.3f} s CPU; "
                f"ratio {with_rego / no_rego:.2f}x wall, {with_rego_cpu / no_rego_cpu:.2f}x CPU"
            )
        if args.profile:
            profiler = cProfile.Profile()
            profiler.runcall(run_check, path)
            pstats.Stats(profiler).sort_stats("cumulative").print_stats(25)


if __name__ == "__main__":
    main_bench()
