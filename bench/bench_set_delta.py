"""Live set change benchmark: a delta of an address set applied by `fw-load set` through the
daemon, on the blocklist bench policy (bench/blocklist.py, mixed IPv4/IPv6).

Run as root: `.venv/bin/python bench/bench_set_delta.py [--entries 1000000] [--delta 1000]
[--rounds 5]`. It compiles the policy, makes a private namespace with a veth pair, starts
`fw-load run` there with a private pin root, then applies a first delta (its idle generation
catches up with the whole live one: untimed), then ROUNDS deltas of DELTA entries each: half
fresh prefixes added, half the previous round's removed. Per round it prints the daemon's own
figure, from the request received to the flip (the goal: < 100 ms), and the phases the reply
reports; then the median and range, with the machine's load before and after.
"""

from __future__ import annotations

import argparse
import bisect
import ipaddress
import json
import os
import random
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from fwc.compiler.backend.build import compile_policy

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))
from blocklist import make_blocklist_yaml, make_cidrs  # noqa: E402
from netns import run_in_netns  # noqa: E402

from policies import load_policy  # noqa: E402

FWLOAD = str(Path(sys.executable).parent / "fw-load")
GOAL_MS = 100.0
_FLIP = re.compile(r"set blocklist of \S+: \S+ \S+ on request; ([0-9.]+) ms to the flip")


class Members:
    """The set's prefixes, to draw fresh prefixes that neither hold nor sit in a member."""

    def __init__(self, cidrs: list[str]) -> None:
        self.keys = set()
        self.networks: dict[int, list[int]] = {4: [], 6: []}
        for cidr in cidrs:
            net = ipaddress.ip_network(cidr)
            self.keys.add((net.version, int(net.network_address), net.prefixlen))
            self.networks[net.version].append(int(net.network_address))
        for values in self.networks.values():
            values.sort()

    def isolated(self, net: ipaddress.IPv4Network | ipaddress.IPv6Network) -> bool:
        first, width = int(net.network_address), net.max_prefixlen
        for plen in range(net.prefixlen + 1):
            up = first >> (width - plen) << (width - plen) if plen else 0
            if (net.version, up, plen) in self.keys:
                return False
        inside = self.networks[net.version]
        at = bisect.bisect_left(inside, first)
        return at == len(inside) or inside[at] > int(net.broadcast_address)


def fresh(members: Members, count: int, rng: random.Random) -> list[str]:
    """`count` new prefixes, 70 % IPv4 (hosts and /24s), 30 % IPv6 (/128s and /64s)."""
    out: list[str] = []
    while len(out) < count:
        if rng.random() < 0.7:
            net: ipaddress.IPv4Network | ipaddress.IPv6Network = ipaddress.ip_network(
                (rng.randrange(11 << 24, 223 << 24), rng.choice((32, 24))), strict=False
            )
        else:
            net = ipaddress.ip_network(
                ((0x2 << 124) | rng.getrandbits(124), rng.choice((128, 64))), strict=False
            )
        if members.isolated(net):
            members.keys.add((net.version, int(net.network_address), net.prefixlen))
            out.append(str(net))
    return out


def fwload(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "SSH_CONNECTION"}
    env["FWC_PIN_ROOT"] = str(root)
    return subprocess.run([FWLOAD, *args], env=env, capture_output=True, text=True, check=False)


def inside(args: argparse.Namespace) -> None:
    """In the bench namespace: the daemon, then the deltas."""
    root, work = Path(args.root), Path(args.work)
    log = work / "run.log"
    env = {k: v for k, v in os.environ.items() if k != "SSH_CONNECTION"}
    env["FWC_PIN_ROOT"] = str(root)
    with log.open("wb") as out:
        daemon = subprocess.Popen(
            [FWLOAD, "run", args.artifact, "--metrics-addr", "off"], stderr=out, env=env
        )
    try:
        deadline = time.monotonic() + 600
        while "control socket" not in log.read_text():
            if daemon.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"fw-load run did not start:\n{log.read_text()}")
            time.sleep(0.2)
        rng = random.Random(15)
        members = Members(make_cidrs(args.entries))
        half = args.delta // 2
        batches = [fresh(members, half, rng) for _ in range(args.rounds + 1)]
        rounds: list[dict[str, float]] = []
        for r, batch in enumerate(batches):
            adds = work / f"add{r}.txt"
            adds.write_text("\n".join(batch) + "\n")
            cmd = ["set", "blocklist", "--add", str(adds), "--json"]
            if r:
                cmd += ["--remove", str(work / f"add{r - 1}.txt")]
            time.sleep(1.1)  # deltas seconds apart wait for no RCU grace period
            done = fwload(root, *cmd)
            if done.returncode:
                raise SystemExit(f"fw-load set failed: {done.stderr}")
            report = json.loads(done.stdout)
            flips = _FLIP.findall(log.read_text())
            timings = report["timings_ms"]
            if r == 0:
                print(f"first delta (idle catches up whole): {float(flips[-1]):.1f} ms to flip")
                continue
            row = {"in-daemon to flip": float(flips[-1]), **timings}
            rounds.append(row)
            print(
                f"round {r}: +{report['added']} -{report['removed']}: "
                + ", ".join(f"{k} {v:.1f}" for k, v in row.items())
            )
        print(f"\n{args.rounds} rounds of {args.delta} entries on {args.entries:,} (ms)")
        for phase in rounds[0]:
            values = [r[phase] for r in rounds]
            print(
                f"  {phase:22s} median {statistics.median(values):8.1f}  "
                f"range {min(values):.1f} - {max(values):.1f}"
            )
        median = statistics.median(r["in-daemon to flip"] for r in rounds)
        print(f"  goal < {GOAL_MS:.0f} ms in the daemon: {'met' if median < GOAL_MS else 'MISSED'}")
    finally:
        daemon.send_signal(signal.SIGTERM)
        daemon.wait(timeout=120)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--entries", type=int, default=1_000_000)
    parser.add_argument("--delta", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument(
        "--compiled", metavar="PATH", help="the artifact: compiled there once, then reused"
    )
    parser.add_argument("--inside", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--root", help=argparse.SUPPRESS)
    parser.add_argument("--work", help=argparse.SUPPRESS)
    parser.add_argument("--artifact", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.inside:
        inside(args)
        return 0
    print(f"load average at start: {os.getloadavg()} on {os.cpu_count()} CPUs", flush=True)
    tag = f"fwcsd{os.getpid() % 100000}"
    root = Path("/sys/fs/bpf") / tag
    with tempfile.TemporaryDirectory() as tmp:
        artifact = Path(args.compiled or Path(tmp) / "blocklist.o")
        if not artifact.exists():
            started = time.monotonic()
            policy = load_policy(make_blocklist_yaml(args.entries))
            compile_policy(policy, output=artifact, strategy="tables")
            print(f"compile: {time.monotonic() - started:.1f} s", flush=True)
        argv = [
            sys.executable,
            __file__,
            "--inside",
            *("--entries", str(args.entries), "--delta", str(args.delta)),
            *("--rounds", str(args.rounds), "--root", str(root), "--work", tmp),
            *("--artifact", str(artifact)),
        ]
        code = run_in_netns(tag, ("sd0", "sd1"), argv, [str(root)])
    print(f"load average at end: {os.getloadavg()}")
    return code


if __name__ == "__main__":
    sys.exit(main())
