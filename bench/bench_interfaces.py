"""The per-packet cost of per-rule interfaces: the same policy with and without them.

Run as root: `.venv/bin/python bench/bench_interfaces.py`. For each strategy and size, the
bench policy is compiled as generated, with every other rule limited to `eth*` or to
`!wg*` (a packet on `eth0` passes both, so every frame gets the same verdict), and with
only its last rule so limited (the class lookup alone, almost). The test run's ingress
interface (the namespace's loopback) is given the class of `eth0` in `fwc_ifaces`. The
programs are timed in interleaved rounds (BPF_PROG_TEST_RUN) on the same frames, every
verdict first checked against the reference evaluator on `eth0`.
"""

from __future__ import annotations

import statistics
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

import yaml

from fwc.artifact.ifclass import IFACE_KEY, IFACE_VALUE, TEST_RUN_IFINDEX, class_of
from fwc.compiler.oracle.evaluate import evaluate
from fwc.compiler.policy.ir import Policy
from fwc.loader.kernel import libbpf
from fwc.loader.kernel.program import LoadedProgram

BENCH = Path(__file__).resolve().parent
INTERFACE = "eth0"
CASES = (("constants", 100), ("tables", 1000), ("tables", 10000))


def with_interfaces(text: str, every: int) -> str:
    """The policy with every `every`-th rule limited to eth* or to !wg* (alternately)."""
    doc = yaml.safe_load(text)
    doc["interfaces"] = {"include": ["eth*", "wg*"]}
    for i, rule in enumerate(doc["rules"]):
        if i % every == every - 1:
            rule["interfaces"] = ["eth*"] if i // every % 2 == 0 else ["!wg*"]
    return str(yaml.safe_dump(doc, sort_keys=False))


def main(argv: Sequence[str] | None = None) -> int:
    sys.path.insert(0, str(BENCH))
    from variants import compiled, parser, time_round

    from policies import load_policy, make_policy_yaml, make_traffic

    args = parser(__doc__.splitlines()[0]).parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="fwc-bench-if-") as tmp:
        for strategy, n in CASES:
            text = make_policy_yaml(n, args.seed)
            variants = {
                "without": load_policy(text, "plain.yaml"),
                "last rule": load_policy(with_interfaces(text, n), "last.yaml"),
                "half the rules": load_policy(with_interfaces(text, 2), "half.yaml"),
            }
            frames = [f for _, f in make_traffic(variants["without"], args.seed)]
            progs = compiled(variants, strategy, Path(tmp))
            for name, policy in variants.items():
                _check(progs[name], policy, frames)
            samples: dict[str, list[float]] = {name: [] for name in variants}
            for _ in range(args.rounds):
                for name, prog in progs.items():
                    samples[name].append(time_round(prog, frames, args.repeat))
            ns = {name: statistics.median(values) for name, values in samples.items()}
            others = ", ".join(
                f"on {name} {value:.1f} (+{value - ns['without']:.1f})"
                for name, value in ns.items()
                if name != "without"
            )
            print(
                f"{strategy} {n} rules, {len(frames)} frames, ns/packet: without interfaces "
                f"{ns['without']:.1f}; interfaces {others}",
                flush=True,
            )
            for prog in progs.values():
                prog.close()
    return 0


def _check(prog: LoadedProgram, policy: Policy, frames: list[bytes]) -> None:
    """Gives the test run's ingress interface eth0's class; every verdict as the evaluator's."""
    table = prog.spec.manifest.interface_classes
    if table is not None:
        fd = prog.map_fd(table.map)
        key = IFACE_KEY.pack(TEST_RUN_IFINDEX)
        libbpf.map_update(fd, key, IFACE_VALUE.pack(class_of(INTERFACE, table)))
    wrong = sum(
        prog.test_run(f).retval != evaluate(policy, f, interface=INTERFACE).xdp_action
        for f in frames
    )
    if wrong:
        raise SystemExit(f"{policy.source_file}: {wrong} verdicts differ from the evaluator")


if __name__ == "__main__":
    sys.exit(main())
