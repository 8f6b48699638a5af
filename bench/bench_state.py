"""The per-packet cost of connection state: the same policy with and without state rules.

Run as root: `.venv/bin/python bench/bench_state.py`. For each strategy and size, the bench
policy is compiled as generated ("without"), with a leading `state: [established, related]`
rule ("leading state", so every tracked packet asks conntrack), and with one state rule after
all others that no frame reaches ("unreached state": rules without state pay nothing). The
frames run in two namespaces: one whose conntrack holds an established entry for every TCP
and UDP frame ("hit"), one that holds none ("miss"). Programs and namespaces are timed in
interleaved rounds (BPF_PROG_TEST_RUN), every verdict first checked against the reference
evaluator given the state the namespace implies.
"""

from __future__ import annotations

import ctypes
import ipaddress
import os
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import yaml

from fwc.compiler.oracle.evaluate import evaluate
from fwc.compiler.oracle.packet import Packet, parse
from fwc.compiler.policy.ir import IPPROTO_TCP, Family, Policy
from fwc.loader.kernel.program import LoadedProgram

BENCH = Path(__file__).resolve().parent
CASES = (("constants", 100), ("tables", 1000))
CLONE_NEWNET = 0x40000000
# sources no bench frame carries (bench/policies.py draws from other pools)
UNREACHED = ["192.0.2.0/24", "2001:db9::/32"]

_libc = ctypes.CDLL(None, use_errno=True)


def with_state(text: str, where: str) -> str:
    """The policy with a state rule first ("leading") or after every other rule ("unreached")."""
    doc = yaml.safe_load(text)
    if where == "leading":
        rule = {"name": "replies", "priority": 0, "action": "allow"}
        rule["state"] = ["established", "related"]
        doc["rules"].insert(0, rule)
    else:
        last = max(r["priority"] for r in doc["rules"]) + 1
        rule = {"name": "unreached", "priority": last, "action": "allow"}
        rule |= {"source_cidrs": UNREACHED, "state": ["new"]}
        doc["rules"].append(rule)
    return str(yaml.safe_dump(doc, sort_keys=False))


def _tuple(p: Packet) -> tuple[int, int | None, int | None, int | None, int | None]:
    return (p.protocol or 0, p.src, p.dst, p.sport, p.dport)


def state_of(packet: Packet, entries: set[tuple[object, ...]]) -> str:
    """The state `entries` (established, seen both ways) give a tracked packet."""
    if packet.inner_protocol is not None:
        key: tuple[object, ...] = (
            packet.inner_protocol,
            packet.inner_src,
            packet.inner_dst,
            packet.inner_sport,
            packet.inner_dport,
        )
        flipped = (key[0], key[2], key[1], key[4], key[3])
        return "related" if key in entries or flipped in entries else "invalid"
    key = _tuple(packet)
    flipped = (key[0], key[2], key[1], key[4], key[3])
    return "established" if key in entries or flipped in entries else "new"


def _insert(ns: str, packet: Packet) -> None:
    family = ipaddress.IPv4Address if packet.family is Family.IPV4 else ipaddress.IPv6Address
    assert packet.src is not None and packet.dst is not None
    cmd = ["ip", "netns", "exec", ns, "conntrack", "-I"]
    cmd += ["-p", "tcp" if packet.protocol == IPPROTO_TCP else "udp"]
    cmd += ["-s", str(family(packet.src)), "-d", str(family(packet.dst))]
    cmd += ["--sport", str(packet.sport), "--dport", str(packet.dport), "--timeout", "3600"]
    if packet.protocol == IPPROTO_TCP:
        cmd += ["--state", "ESTABLISHED"]
    cmd += ["-u", "SEEN_REPLY"]
    subprocess.run(cmd, check=True, capture_output=True)


@contextmanager
def namespaces(frames: list[bytes]) -> Iterator[dict[str, tuple[str, set[tuple[object, ...]]]]]:
    """ "hit" and "miss": a namespace with an entry for every tracked TCP/UDP frame, and one
    with none; each with the entries it holds."""
    suffix = f"{os.getpid() % 100000}"
    made: list[str] = []
    try:
        out: dict[str, tuple[str, set[tuple[object, ...]]]] = {}
        for name in ("hit", "miss"):
            ns = f"fwcbs{name}{suffix}"
            subprocess.run(["ip", "netns", "add", ns], check=True, capture_output=True)
            made.append(ns)
            entries: set[tuple[object, ...]] = set()
            if name == "hit":
                for packet in map(parse, frames):
                    if packet.tracked and packet.inner_protocol is None:
                        key = _tuple(packet)
                        flipped = (key[0], key[2], key[1], key[4], key[3])
                        if key not in entries and flipped not in entries:
                            _insert(ns, packet)
                            entries.add(key)
            out[name] = (ns, entries)
        yield out
    finally:
        for ns in made:
            subprocess.run(["ip", "netns", "del", ns], check=False, capture_output=True)


@contextmanager
def inside(ns: str) -> Iterator[None]:
    """This (single-threaded) process in network namespace `ns`, then back."""
    home = os.open("/proc/self/ns/net", os.O_RDONLY)
    target = os.open(f"/run/netns/{ns}", os.O_RDONLY)
    try:
        if _libc.setns(target, CLONE_NEWNET) != 0:
            raise OSError(ctypes.get_errno(), f"setns {ns}")
        yield
    finally:
        _libc.setns(home, CLONE_NEWNET)
        os.close(target)
        os.close(home)


def main(argv: Sequence[str] | None = None) -> int:
    sys.path.insert(0, str(BENCH))
    from variants import compiled, parser, time_round

    from policies import load_policy, make_policy_yaml, make_traffic

    args = parser(__doc__.splitlines()[0]).parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="fwc-bench-state-") as tmp:
        for strategy, n in CASES:
            text = make_policy_yaml(n, args.seed)
            variants = {
                "without": load_policy(text, "plain.yaml"),
                "leading state": load_policy(with_state(text, "leading"), "leading.yaml"),
                "unreached state": load_policy(with_state(text, "unreached"), "unreached.yaml"),
            }
            frames = [f for _, f in make_traffic(variants["without"], args.seed)]
            progs = compiled(variants, strategy, Path(tmp))
            with namespaces(frames) as spaces:
                for ns, entries in spaces.values():
                    with inside(ns):
                        for name, prog in progs.items():
                            _check(prog, variants[name], frames, entries)
                samples: dict[tuple[str, str], list[float]] = {}
                for _ in range(args.rounds):
                    for where, (ns, _) in spaces.items():
                        with inside(ns):
                            for name, prog in progs.items():
                                t = time_round(prog, frames, args.repeat)
                                samples.setdefault((name, where), []).append(t)
            print(f"{strategy} {n} rules, {len(frames)} frames, ns/packet median [min-max]:")
            for (name, where), values in samples.items():
                print(
                    f"  {name:16} {where:5} {statistics.median(values):6.1f} "
                    f"[{min(values):.1f}-{max(values):.1f}]",
                    flush=True,
                )
            for prog in progs.values():
                prog.close()
    return 0


def _check(
    prog: LoadedProgram, policy: Policy, frames: list[bytes], entries: set[tuple[object, ...]]
) -> None:
    """Every verdict as the evaluator's, given the state `entries` imply; the unreached state
    rule decides no frame."""
    for frame in frames:
        want = evaluate(policy, frame, ct_state=state_of(parse(frame), entries))
        if prog.test_run(frame).retval != want.xdp_action:
            raise SystemExit(
                f"{policy.source_file}: frame {frame.hex()} differs from the evaluator"
            )
        if want.decided_by == "unreached":
            raise SystemExit(f"{policy.source_file}: the unreached rule decides {frame.hex()}")


if __name__ == "__main__":
    sys.exit(main())
