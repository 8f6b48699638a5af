"""Live set changes (`fw-load set`): a delta of an address set applied through a real
`fw-load run` daemon, then the pinned program's verdicts (BPF_PROG_TEST_RUN) against the
reference evaluator of the policy with the set edited, for addresses in added, removed and
untouched prefixes of both families; a second delta after the first; and each refusal."""

from __future__ import annotations

import ipaddress
import json
import os
import random
import struct
import sys
from pathlib import Path

import pytest

from fwc.compiler.oracle.evaluate import XDP_DROP, evaluate
from fwc.compiler.oracle.frames import PacketFields, build_frame
from fwc.compiler.policy.ir import IPPROTO_TCP, IPPROTO_UDP, Family, Policy
from fwc.loader import faults
from fwc.loader.faults import KILL_ENV
from fwc.loader.kernel import libbpf
from tests.compile_helpers import policy_of
from tests.loader_netns import Pair, veth_pair
from tests.test_control import daemon, served
from tests.test_live_update import compile_tables

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))
from blocklist import CLEAN_V4, CLEAN_V6, make_cidrs

pytestmark = [pytest.mark.kernel, pytest.mark.netns]

MEMBERS = 3_000
ADDS = 600
REMOVES = 400
SERVICES = ((IPPROTO_TCP, 22), (IPPROTO_TCP, 23), (IPPROTO_TCP, 80), (IPPROTO_UDP, 53))
_U32 = struct.Struct("<I")


def policy_text(interface: str, blocklist: list[str]) -> str:
    """A blocklist between a management rule (another address set) and a service rule."""
    entries = ", ".join(f'"{c}"' for c in blocklist)
    return f"""
name: setlive
default_action: allow
interfaces: {{include: ["{interface}"]}}
sets:
  blocklist: [{entries}]
  mgmt: ["{CLEAN_V4}", "{CLEAN_V6}"]
  web: [80, 443]
rules:
  - {{name: allow_mgmt_ssh, priority: 5, action: allow, protocol: tcp, source_cidrs: ["$mgmt"],
      destination_ports: [22]}}
  - {{name: deny_blocklist, priority: 10, action: deny, source_cidrs: ["$blocklist"]}}
  - {{name: deny_telnet, priority: 20, action: deny, protocol: tcp, destination_ports: [23]}}
  - {{name: deny_web_v6, priority: 30, action: deny, protocol: tcp, destination_ports: ["$web"],
      destination_cidrs: ["2001:db8::/32"]}}
"""


def isolated(cidrs: list[str]) -> list[str]:
    """The CIDRs no other one of the list holds or is held by (removable live)."""
    nets = [ipaddress.ip_network(c) for c in cidrs]
    present = {(n.version, int(n.network_address), n.prefixlen) for n in nets}
    nested: set[tuple[int, int, int]] = set()
    for n in nets:
        width = n.max_prefixlen
        for plen in range(n.prefixlen):
            up = (n.version, int(n.network_address) >> (width - plen) << (width - plen), plen)
            if up in present:
                nested |= {up, (n.version, int(n.network_address), n.prefixlen)}
    return [
        c
        for c, n in zip(cidrs, nets, strict=True)
        if (n.version, int(n.network_address), n.prefixlen) not in nested
    ]


def write_list(path: Path, cidrs: list[str]) -> Path:
    path.write_text("# a reputation list delta\n" + "".join(f"{c}  # entry\n" for c in cidrs))
    return path


def addresses(cidrs: list[str], rng: random.Random) -> list[tuple[Family, int]]:
    """First, last and one random address of each CIDR, and the addresses beside it."""
    out: list[tuple[Family, int]] = []
    for cidr in cidrs:
        net = ipaddress.ip_network(cidr)
        family = Family.IPV4 if net.version == 4 else Family.IPV6
        first, last = int(net.network_address), int(net.broadcast_address)
        top = (1 << net.max_prefixlen) - 1
        picks = (first, last, rng.randint(first, last), first - 1, last + 1)
        out += [(family, a) for a in picks if 0 <= a <= top]
    return out


def clean(rng: random.Random) -> list[tuple[Family, int]]:
    out = []
    for pool, family in ((CLEAN_V4, Family.IPV4), (CLEAN_V6, Family.IPV6)):
        first = int(pool.network_address)
        bits = pool.max_prefixlen - pool.prefixlen
        out += [(family, first + rng.getrandbits(bits)) for _ in range(50)]
    return out


def verdicts_match(pair: Pair, policy: Policy, sample: list[tuple[Family, int]], seed: int) -> int:
    """Every sampled source's verdict from the pinned program equals the evaluator's; how
    many were dropped."""
    rng = random.Random(seed)
    dropped = 0
    fd = libbpf.obj_get(pair.root / "setlive" / "prog")
    try:
        for family, src in sample:
            protocol, port = rng.choice(SERVICES)
            v6 = family is Family.IPV6
            dst = int(ipaddress.ip_address("2001:db8::1" if v6 else "192.0.2.1"))
            frame = build_frame(PacketFields(family, protocol, src, dst, dport=port))
            want = evaluate(policy, frame).xdp_action
            got = libbpf.prog_test_run(fd, frame)[0]
            assert got == want, (family.name, hex(src), protocol, port, got, want)
            dropped += want == XDP_DROP
    finally:
        os.close(fd)
    return dropped


def live_generation(pair: Pair) -> int:
    fd = libbpf.obj_get(pair.root / "setlive" / "maps" / "fwc_gen")
    try:
        return _U32.unpack(libbpf.map_lookup(fd, _U32.pack(0), 4) or bytes(4))[0]
    finally:
        os.close(fd)


def test_set_deltas_through_the_daemon_match_the_evaluator(tmp_path: Path) -> None:
    rng = random.Random(15)
    cidrs = make_cidrs(MEMBERS + 2 * ADDS, seed=15)
    members, adds, adds2 = cidrs[:MEMBERS], cidrs[MEMBERS : MEMBERS + ADDS], cidrs[-ADDS:]
    removes = rng.sample(isolated(members), REMOVES)
    with veth_pair(subnet=11) as pair:
        artifact = compile_tables(policy_text(pair.if_a, members), tmp_path)
        log = tmp_path / "daemon.log"
        with daemon(pair, artifact, log):
            gen = live_generation(pair)
            done = pair.fwload(
                "set",
                "blocklist",
                "--add",
                str(write_list(tmp_path / "add.txt", adds)),
                "--remove",
                str(write_list(tmp_path / "remove.txt", removes)),
                "--json",
            )
            assert (done.returncode, done.stderr) == (0, ""), done.stderr
            report = json.loads(done.stdout)
            assert (report["added"], report["removed"]) == (ADDS, REMOVES)
            assert report["members"] == MEMBERS + ADDS - REMOVES
            assert (report["from_generation"], report["to_generation"]) == (gen, 1 - gen)
            assert served(log) == 1 and "set blocklist of setlive: +600 -400" in log.read_text()
            assert live_generation(pair) == 1 - gen
            edited = [c for c in members if c not in set(removes)] + adds
            policy = policy_of(policy_text(pair.if_a, edited), "edited.yaml")
            untouched = rng.sample([c for c in members if c not in set(removes)], 200)
            picked = rng.sample(adds, 200) + rng.sample(removes, 200) + untouched
            sample = addresses(picked, rng) + clean(rng)
            assert verdicts_match(pair, policy, sample, 1) > len(sample) // 3

            # a second delta: the idle generation catches up with the first one first
            back = rng.sample(removes, 100)
            gone = rng.sample([c for c in isolated(edited) if c in set(adds)], 100)
            done = pair.fwload(
                "set",
                "blocklist",
                "--add",
                str(write_list(tmp_path / "add2.txt", adds2 + back)),
                "--remove",
                str(write_list(tmp_path / "remove2.txt", gone)),
            )
            assert (done.returncode, done.stderr) == (0, ""), done.stderr
            assert "set blocklist: +700 -100" in done.stdout
            assert live_generation(pair) == gen
            twice = [c for c in edited if c not in set(gone)] + adds2 + back
            policy = policy_of(policy_text(pair.if_a, twice), "twice.yaml")
            picked = rng.sample(adds2, 150) + back + gone + rng.sample(adds, 100) + untouched
            sample = addresses(picked, rng) + clean(rng)
            verdicts_match(pair, policy, sample, 2)

            status = pair.fwload("status")
            assert "sets changed live: blocklist +1300 -500" in status.stdout, status.stdout
            # the daemon's kept index refuses removals nested in or holding another member
            alone = set(isolated(twice))
            nested = [c for c in twice if c not in alone][:20]
            assert nested
            for cidr in nested:
                path = write_list(tmp_path / "nested.txt", [cidr])
                done = pair.fwload("set", "blocklist", "--remove", str(path))
                assert done.returncode == 2 and "overlaps another member" in done.stderr, cidr

            # an apply of the artifact replaces the live set changes, like any apply
            again = pair.fwload("apply", str(artifact), "--json")
            assert again.returncode == 0, again.stderr
            policy = policy_of(policy_text(pair.if_a, members), "original.yaml")
            verdicts_match(pair, policy, sample, 3)
            assert "sets changed live" not in pair.fwload("status").stdout


def refused(pair: Pair, *args: str) -> str:
    """The one-line refusal of `fw-load set ARGS`, after checking nothing changed."""
    tables = (pair.root / "setlive" / "maps" / "fwc_gen").exists()
    before = live_generation(pair) if tables else None
    done = pair.fwload("set", *args, "--no-daemon")
    assert done.returncode == 2 and done.stdout == "", (done.stdout, done.stderr)
    assert done.stderr.startswith("fw-load set: ") and done.stderr.count("\n") == 1
    if before is not None:
        assert live_generation(pair) == before
    return done.stderr


def refusal_policy(interface: str, members: list[str]) -> str:
    """The policy above, with a set named beside another in one rule, and a one-member set."""
    return (
        policy_text(interface, members)
        .replace(
            "  - {name: deny_telnet,",
            "  - {name: deny_both, priority: 15, action: deny, protocol: udp, "
            'source_cidrs: ["$mgmt", "$other"]}\n'
            '  - {name: deny_single, priority: 16, action: deny, source_cidrs: ["$single"]}\n'
            "  - {name: deny_telnet,",
        )
        .replace(
            "  web: [80, 443]",
            '  web: [80, 443]\n  other: ["172.16.0.0/12"]\n  single: ["203.0.113.77/32"]',
        )
    )


def test_each_change_the_live_tables_cannot_make_exactly_is_refused(tmp_path: Path) -> None:
    members = ["192.0.2.0/24", "192.0.2.128/25", "198.51.100.0/24", "2001:db8:5::/48"]
    rng = random.Random(7)
    with veth_pair(subnet=12) as pair:
        lists = tmp_path / "lists"
        lists.mkdir()
        one = write_list(lists / "one.txt", ["203.0.113.9"])
        assert "no policy is applied" in refused(pair, "blocklist", "--add", str(one))

        text = refusal_policy(pair.if_a, members)
        constants = compile_tables(text, tmp_path, strategy="constants")
        assert pair.fwload("apply", str(constants)).returncode == 0
        assert "strategy constants" in refused(pair, "blocklist", "--add", str(one))

        artifact = compile_tables(text, tmp_path)
        assert pair.fwload("apply", str(artifact)).returncode == 0
        # more members than the member map has room for (/16s: no trie chunk or skip record)
        wide = [f"{a}.{b}.0.0/16" for a in range(100, 141) for b in range(256)]
        # two hosts a /16: the first a skip record, then a chunk and a skip record each
        pairs = [f"{100 + i // 200}.{i % 200}.{third}.1" for i in range(2800) for third in (1, 2)]
        cases = [
            (["web", "--add", str(one)], "holds ports"),
            (["nosuch", "--add", str(one)], "has no set 'nosuch'"),
            (["mgmt", "--add", str(one)], "lists it with set `other`"),
            (
                ["blocklist", "--remove", str(write_list(lists / "r1.txt", ["203.0.113.0/24"]))],
                "is not a member",
            ),
            (
                ["blocklist", "--remove", str(write_list(lists / "r2.txt", ["192.0.2.0/24"]))],
                "overlaps another member",
            ),
            (
                ["blocklist", "--add", str(write_list(lists / "a1.txt", ["10.1.2.0/24"]))],
                "would need a class the live tables do not have",
            ),
            (
                ["blocklist", "--add", str(one), "--remove", str(one)],
                "both added to and removed from",
            ),
            (
                ["blocklist", "--add", str(write_list(lists / "bad.txt", ["no.such.address"]))],
                "is not an IPv4 or IPv6 address",
            ),
            (
                ["single", "--remove", str(write_list(lists / "s.txt", ["203.0.113.77"]))],
                "would be empty",
            ),
            (
                ["blocklist", "--add", str(write_list(lists / "many.txt", wide))],
                "member map has no room",
            ),
            (
                ["blocklist", "--add", str(write_list(lists / "pairs.txt", pairs))],
                "trie s4 has no room for another",
            ),
        ]
        for args, reason in cases:
            assert reason in refused(pair, *args), args
        # after the refusals, a change still applies, exactly
        last = write_list(lists / "last.txt", ["198.51.100.0/24", "2001:db8:5::/48"])
        done = pair.fwload("set", "blocklist", "--remove", str(last), "--add", str(one))
        assert done.returncode == 0, done.stderr
        edited = ["192.0.2.0/24", "192.0.2.128/25", "203.0.113.9/32"]
        policy = policy_of(refusal_policy(pair.if_a, edited), "edited.yaml")
        sample = addresses([*members, "10.1.2.0/24", "203.0.113.9/32"], rng) + clean(rng)
        assert verdicts_match(pair, policy, sample, 4)

        # killed before or after the flip: status settles it, and the old members hold
        extra = write_list(lists / "extra.txt", ["198.51.100.0/24"])
        for point in faults.SET_POINTS:
            gen = live_generation(pair)
            killed = pair.fwload("set", "blocklist", "--add", str(extra), env={KILL_ENV: point})
            assert killed.returncode == -9, (point, killed.stderr)
            status = pair.fwload("status")
            assert status.returncode == 0, status.stderr
            assert live_generation(pair) == gen, point
            flipped = "flipped back to generation" in status.stdout
            assert flipped == (point == "set:flipped"), (point, status.stdout)
            assert verdicts_match(pair, policy, sample, 5)
