"""What the benchmarks of one feature share: the bench policy as generated and with the
feature, compiled and loaded side by side, timed in interleaved rounds on the same frames
(BPF_PROG_TEST_RUN)."""

from __future__ import annotations

import argparse
import statistics
from collections.abc import Mapping
from pathlib import Path

from fwc.compiler.backend.build import compile_policy
from fwc.compiler.policy.ir import Policy
from fwc.loader.kernel import libbpf
from fwc.loader.kernel.program import LoadedProgram


def parser(description: str) -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=description)
    ap.add_argument("--repeat", type=int, default=20000)
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--seed", type=int, default=1)
    return ap


def compiled(
    variants: Mapping[str, Policy], strategy: str, out_dir: Path
) -> dict[str, LoadedProgram]:
    """Each variant compiled with `strategy` and loaded, by name."""
    progs: dict[str, LoadedProgram] = {}
    for name, policy in variants.items():
        out = out_dir / f"{strategy}-{len(policy.rules)}-{name.replace(' ', '-')}.o"
        compile_policy(policy, output=out, strategy=strategy, cache_dir=None)
        progs[name] = LoadedProgram.load(out)
    return progs


def time_round(prog: LoadedProgram, frames: list[bytes], repeat: int) -> float:
    """ns/packet over `frames`, each run `repeat` times."""
    return statistics.fmean(libbpf.prog_test_run(prog.prog_fd, f, repeat)[1] for f in frames)
