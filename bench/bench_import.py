"""`fwc import` plus `fwc compile` of a generated 10,000-rule iptables-save (goal: under 10 s).

Run: `.venv/bin/python bench/bench_import.py [--rules 10000] [--repeat 3]`.
The ruleset is deterministic: host and network blocks, port and multiport accepts,
ICMP types, and fail2ban-style user chains (jumps, REJECTs, RETURN) every 500 rules.
Prints the wall time of each command as its own process, best of `--repeat`.
"""

from __future__ import annotations

import argparse
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BIN = Path(sys.executable).parent


def make_ruleset(n_rules: int, seed: int = 13) -> str:
    rnd = random.Random(seed)
    chains: list[str] = []
    body: list[str] = []
    for k in range(n_rules):
        if k % 500 == 499:
            name = f"f2b-{len(chains)}"
            chains.append(name)
            port = rnd.choice([22, 25, 80, 443, 993])
            body.append(f"-A INPUT -p tcp -m tcp --dport {port} -j {name}")
            for _ in range(3):
                body.append(
                    f"-A {name} -s 203.0.{rnd.randrange(256)}.{rnd.randrange(256)}/32 -j REJECT"
                )
            body.append(f"-A {name} -j RETURN")
            continue
        octets = f"{rnd.randrange(1, 224)}.{rnd.randrange(256)}.{rnd.randrange(256)}"
        net = f"{octets}.0/{rnd.choice([16, 20, 24])}"
        shape = k % 4
        if shape == 0:
            body.append(f"-A INPUT -s {net} -j DROP")
        elif shape == 1:
            body.append(
                f"-A INPUT -s {net} -p tcp -m tcp --dport {rnd.randrange(1, 65536)} -j ACCEPT"
            )
        elif shape == 2:
            ports = ",".join(str(rnd.randrange(1, 65536)) for _ in range(3))
            body.append(f"-A INPUT -s {net} -p udp -m multiport --dports {ports} -j ACCEPT")
        else:
            kind = rnd.choice([0, 3, 8, 11])
            body.append(f"-A INPUT -s {net} -p icmp -m icmp --icmp-type {kind} -j ACCEPT")
    head = ["*filter", ":INPUT DROP [0:0]", ":FORWARD DROP [0:0]", ":OUTPUT ACCEPT [0:0]"]
    head += [f":{c} - [0:0]" for c in chains]
    return "\n".join([*head, *body, "COMMIT", ""])


def timed(cmd: list[str]) -> tuple[float, float]:
    """(wall, CPU) seconds of `cmd` as its own process, its children's CPU included."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    took = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        sys.exit(f"{' '.join(cmd[:3])}: exit {done.returncode}: {done.stderr.strip()[-300:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return took, cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rules", type=int, default=10000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="fwc-bench-import-") as tmp:
        source = Path(tmp) / "rules.v4"
        source.write_text(make_ruleset(args.rules))
        policy, artifact = Path(tmp) / "imported.yaml", Path(tmp) / "imported.o"
        imports, compiles = [], []
        for _ in range(args.repeat):
            imports.append(
                timed([str(BIN / "fwc"), "import", "iptables", str(source), "-o", str(policy)])
            )
            compiles.append(timed([str(BIN / "fwc"), "compile", str(policy), "-o", str(artifact)]))
        rules = policy.read_text().count("\n  - name: ")
        print(f"source: {args.rules} iptables rules -> {rules} policy rules")
        print(f"load average: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
        for name, runs in (("fwc import", imports), ("fwc compile", compiles)):
            wall, cpu = min(runs)
            print(f"{name + ':':13} {wall:.2f} s wall, {cpu:.2f} s CPU (best of {args.repeat})")
        wall = min(imports)[0] + min(compiles)[0]
        cpu = min(imports)[1] + min(compiles)[1]
        verdict = "met" if wall < 10 else "MISSED"
        print(f"import + compile: {wall:.2f} s wall, {cpu:.2f} s CPU (goal under 10 s: {verdict})")


if __name__ == "__main__":
    main()
