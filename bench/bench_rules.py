"""ns/packet of the constants strategy at 1..1,000 rules, beside a parse-only XDP program.

Run `python bench/bench_rules.py` (root): BPF_PROG_TEST_RUN with many repeats, for
frames that hit the first rule, the last rule and the default action, plus the
compile time of the 1,000-rule policy.
"""

from __future__ import annotations

import argparse
import ipaddress
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # for tests.bigpolicy, the generated policies the tests use too

from fwc.compiler.backend.build import CLANG_FLAGS, compile_policy  # noqa: E402
from fwc.compiler.backend.toolchain import find_toolchain  # noqa: E402
from fwc.compiler.oracle import frames as fr  # noqa: E402
from fwc.compiler.oracle.evaluate import evaluate  # noqa: E402
from fwc.compiler.policy.ir import Policy  # noqa: E402
from fwc.loader import libbpf  # noqa: E402
from fwc.loader.kernel.program import LoadedProgram  # noqa: E402
from tests.bigpolicy import big_policy, rule_ports, rule_source  # noqa: E402

SIZES = (1, 10, 100, 1000)
TRIALS = 5


def frame_for_rule(i: int) -> bytes:
    """A frame that rule i of tests.bigpolicy matches (and no earlier rule does)."""
    net = ipaddress.ip_network(rule_source(i))
    proto = "tcp" if i % 4 < 2 else "udp"
    fields = {"proto": proto, "src": str(net.network_address + 1), "dport": rule_ports(i)[0]}
    return fr.build_frame(fr.fields_from_mapping(fields))


DEFAULT_FRAME = fr.build_frame(fr.fields_from_mapping({"proto": "tcp", "dport": 1, "flags": "SYN"}))


def time_frame(prog_fd: int, frame: bytes, repeat: int) -> float:
    """Median over trials of the kernel's mean ns per run."""
    return statistics.median(libbpf.prog_test_run(prog_fd, frame, repeat)[1] for _ in range(TRIALS))


def parse_only(work: Path) -> bytes:
    toolchain = find_toolchain()
    out = work / "parse_only.o"
    subprocess.run(
        [
            str(toolchain.clang),
            *CLANG_FLAGS,
            "-I",
            str(ROOT / "templates" / "bpf"),
            "-c",
            str(ROOT / "bench" / "parse_only.c"),
            "-o",
            str(out),
        ],
        check=True,
    )
    return out.read_bytes()


def compiled(policy: Policy, work: Path) -> tuple[Path, float]:
    start = time.perf_counter()
    result = compile_policy(policy, output=work / f"{policy.name}.o")
    return result.path, time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=20000, help="runs per measurement")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="fwc-bench-") as tmp:
        work = Path(tmp)
        base = libbpf.Object(parse_only(work))
        base.load()
        try:
            base_fd = base.program_fd("fwc_xdp")
            print(f"BPF_PROG_TEST_RUN, repeat={args.repeat}, median of {TRIALS} trials")
            print(
                f"{'rules':>6} {'frame':>8} {'ns/pkt':>8} {'parse-only':>11} {'ratio':>6}"
                f" {'insns':>6} {'compile s':>9}"
            )
            for n in SIZES:
                policy = big_policy(n)
                path, seconds = compiled(policy, work)
                cases = {"first": frame_for_rule(0), "last": frame_for_rule(n - 1)}
                cases["default"] = DEFAULT_FRAME
                decided = [evaluate(policy, f).decided_by for f in cases.values()]
                assert decided == ["r00000", f"r{n - 1:05d}", "default"], decided
                with LoadedProgram.load(path) as prog:
                    insns = prog.spec.insn_count
                    for name, frame in cases.items():
                        ns = time_frame(prog.prog_fd, frame, args.repeat)
                        baseline = time_frame(base_fd, frame, args.repeat)
                        print(
                            f"{n:>6} {name:>8} {ns:>8.1f} {baseline:>11.1f}"
                            f" {ns / max(baseline, 1):>6.2f} {insns:>6} {seconds:>9.2f}"
                        )
        finally:
            base.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
