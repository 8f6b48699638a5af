"""Connection state in the kernel against the reference evaluator: real conntrack entries in a
private namespace (made with the conntrack tool, and by real connections over its loopback),
frames through BPF_PROG_TEST_RUN in that namespace, both strategies; the evaluator is given the
state the entries imply (docs/semantics.md, Connection state)."""

from __future__ import annotations

import ipaddress
import json
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fwc.compiler.backend.build import compile_policy
from fwc.compiler.oracle import frames as fr
from fwc.compiler.oracle.evaluate import evaluate
from fwc.compiler.oracle.packet import Packet, parse
from fwc.compiler.policy.ir import Policy
from tests.compile_helpers import policy_of
from tests.loader_netns import sh, unique
from tests.strategies import policy_documents, policy_from_document, valid_frames

pytestmark = [pytest.mark.kernel, pytest.mark.netns]

STRATEGIES = ("constants", "tables")
TCP, UDP, ICMP, ICMPV6 = 6, 17, 1, 58


def _ip(text: str) -> int:
    return int(ipaddress.ip_address(text))


# The entries the namespace's conntrack holds: (protocol, src, dst, sport, dport, seen reply).
# An entry without SEEN_REPLY is `new` in its original direction, `established` in its reply.
ENTRIES = (
    (TCP, "10.9.0.1", "10.9.0.2", 40000, 80, True),
    (TCP, "10.9.0.1", "10.9.0.2", 40001, 22, False),
    (UDP, "10.9.0.1", "10.9.0.3", 5353, 53, True),
    (UDP, "10.9.0.1", "10.9.0.3", 5354, 53, False),
    (TCP, "2001:db8::1", "2001:db8::2", 40002, 443, True),
    (UDP, "2001:db8::1", "2001:db8::3", 5000, 53, False),
)
_KNOWN = {(p, _ip(s), _ip(d), sp, dp): seen for p, s, d, sp, dp, seen in ENTRIES}


def model_state(packet: Packet) -> str:
    """The state the entries give a tracked packet, by the rules of docs/semantics.md."""
    if packet.inner_protocol is not None:
        key = (
            packet.inner_protocol,
            packet.inner_src,
            packet.inner_dst,
            packet.inner_sport,
            packet.inner_dport,
        )
        flipped = (key[0], key[2], key[1], key[4], key[3])
        return "related" if key in _KNOWN or flipped in _KNOWN else "invalid"
    key = (packet.protocol, packet.src, packet.dst, packet.sport, packet.dport)
    flipped = (key[0], key[2], key[1], key[4], key[3])
    if flipped in _KNOWN:
        return "established"
    return "established" if _KNOWN.get(key) else "new"


def _eth(family: int) -> bytes:
    return fr.ethernet(0x0800 if family == 4 else 0x86DD)


def _l4(proto: int, sport: int, dport: int) -> bytes:
    return fr.tcp(sport, dport, 0x10) if proto == TCP else fr.udp(sport, dport)


def ip_frame(proto: int, src: str, dst: str, sport: int, dport: int) -> bytes:
    """A TCP (ACK) or UDP frame of the addresses' family."""
    a, b = ipaddress.ip_address(src), ipaddress.ip_address(dst)
    if a.version == 4:
        return _eth(4) + fr.ipv4(int(a), int(b), proto, _l4(proto, sport, dport))
    return _eth(6) + fr.ipv6(int(a), int(b), proto, _l4(proto, sport, dport))


def icmp_error(
    proto: int, src: str, dst: str, sport: int, dport: int, kind: int = 0, quote: int = 64
) -> bytes:
    """An ICMP error from a router about the packet (src -> dst) it quotes (its first `quote`
    bytes); `kind` picks the error type among the family's."""
    a, b = ipaddress.ip_address(src), ipaddress.ip_address(dst)
    if a.version == 4:
        quoted = fr.ipv4(int(a), int(b), proto, _l4(proto, sport, dport))[:quote]
        error = fr.icmp((3, 11, 12, 4, 5)[kind % 5], 1, quoted)
        return _eth(4) + fr.ipv4(_ip("192.0.2.254"), int(a), ICMP, error)
    quoted = fr.ipv6(int(a), int(b), proto, _l4(proto, sport, dport))[:quote]
    error = fr.icmp((1, 2, 3, 4)[kind % 4], 0, quoted)
    return _eth(6) + fr.ipv6(_ip("2001:db8::fe"), int(a), ICMPV6, error)


def crafted_frames() -> list[bytes]:
    """Frames of every entry both ways, near misses, ICMP errors about tracked and untracked
    flows, and untracked packets (echo, other protocols, fragments, cut-short quotes)."""
    out: list[bytes] = []
    for i, (proto, src, dst, sport, dport, _) in enumerate(ENTRIES):
        out += [
            ip_frame(proto, src, dst, sport, dport),
            ip_frame(proto, dst, src, dport, sport),
            ip_frame(proto, src, dst, sport + 100, dport),
            ip_frame(TCP + UDP - proto, src, dst, sport, dport),  # the other protocol
            icmp_error(proto, src, dst, sport, dport, i),
            icmp_error(proto, dst, src, dport, sport, i + 1),
            icmp_error(proto, src, dst, sport, dport + 1, i + 2),
        ]
    out += [
        _eth(4) + fr.ipv4(_ip("10.9.0.2"), _ip("10.9.0.1"), ICMP, fr.icmp(8)),
        _eth(6) + fr.ipv6(_ip("2001:db8::2"), _ip("2001:db8::1"), ICMPV6, fr.icmp(128)),
        _eth(4) + fr.ipv4(_ip("10.9.0.1"), _ip("10.9.0.2"), 47, b"\0" * 8),
        _eth(4)
        + fr.ipv4(_ip("10.9.0.1"), _ip("10.9.0.2"), TCP, _l4(TCP, 40000, 80), frag_offset=3),
        icmp_error(TCP, "10.9.0.1", "10.9.0.2", 40000, 80, quote=22),  # quoted ports cut off
        icmp_error(UDP, "2001:db8::1", "2001:db8::3", 5000, 53, quote=43),
        # an ICMPv4 error quoting a quoted non-first fragment
        _eth(4)
        + fr.ipv4(
            _ip("192.0.2.254"),
            _ip("10.9.0.1"),
            ICMP,
            fr.icmp(
                3,
                1,
                fr.ipv4(_ip("10.9.0.1"), _ip("10.9.0.2"), TCP, _l4(TCP, 40000, 80), frag_offset=1),
            ),
        ),
    ]
    return out


# Runs inside the namespace: per frame, the verdict and the rule whose counter moved.
RUNNER = """
import json, sys
from fwc.loader.kernel.program import LoadedProgram
frames = json.load(sys.stdin)
out = []
with LoadedProgram.load(sys.argv[1]) as prog:
    slots = prog.spec.manifest.counters.slots
    names = dict(zip(slots.index, slots.name))
    for frame in frames:
        prog.reset_counters()
        verdict = prog.test_run(bytes.fromhex(frame)).retval
        counts = enumerate(prog.counters())
        hits = [names[i] for i, (n, _) in counts if n and names[i] != "would_drop"]
        out.append([verdict, hits[0].removeprefix("rule:") if len(hits) == 1 else None])
print(json.dumps(out))
"""


def kernel_outcomes(ns: str, artifact: Path, batch: list[bytes]) -> list[tuple[int, str | None]]:
    done = subprocess.run(
        ["nsenter", f"--net=/run/netns/{ns}", sys.executable, "-c", RUNNER, str(artifact)],
        input=json.dumps([f.hex() for f in batch]),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return [(v, r) for v, r in json.loads(done.stdout)]


def check_against_evaluator(ns: str, policy: Policy, batch: list[bytes], out: Path) -> None:
    """Every frame of `batch` through both strategies, against the evaluator given the
    state the entries imply."""
    for strategy in STRATEGIES:
        result = compile_policy(policy, output=out / f"{strategy}.o", strategy=strategy)
        assert result.manifest["conntrack"] == any(r.has_state for r in policy.rules)
        got = kernel_outcomes(ns, result.path, batch)
        for frame, (verdict, rule) in zip(batch, got, strict=True):
            state = model_state(parse(frame))
            want = evaluate(policy, frame, ct_state=state)
            assert (verdict, rule or want.decided_by) == (want.xdp_action, want.decided_by), (
                f"{strategy}: frame {frame.hex()} ({state if want.packet.tracked else 'untracked'})"
                f": kernel {verdict} by {rule}, evaluator {want.xdp_action} by {want.decided_by}"
            )


def _conntrack_insert(ns: str, proto: int, src: str, dst: str, sport: int, dport: int, seen: bool):
    name = "tcp" if proto == TCP else "udp"
    cmd = ["ip", "netns", "exec", ns, "conntrack", "-I", "-p", name, "-s", src, "-d", dst]
    cmd += ["--sport", str(sport), "--dport", str(dport), "--timeout", "600"]
    if proto == TCP:
        cmd += ["--state", "ESTABLISHED" if seen else "SYN_SENT"]
    if seen:
        cmd += ["-u", "SEEN_REPLY"]
    sh(*cmd)


@pytest.fixture(scope="module")
def namespace() -> Iterator[str]:
    """A namespace whose conntrack holds ENTRIES."""
    ns = f"fwcst{unique('')}"
    try:
        sh("ip", "netns", "add", ns)
        sh("ip", "-n", ns, "link", "set", "lo", "up")
        for entry in ENTRIES:
            _conntrack_insert(ns, *entry)
        yield ns
    finally:
        sh("ip", "netns", "del", ns, check=False)


# One rule per state: the deciding rule names the state the kernel saw (none: untracked).
BY_STATE = policy_of(
    textwrap.dedent("""\
    name: bystate
    default_action: deny
    rules:
      - {name: est, priority: 1, action: allow, state: [established]}
      - {name: rel, priority: 2, action: allow, state: [related]}
      - {name: new, priority: 3, action: deny, state: [new]}
      - {name: inv, priority: 4, action: deny, state: [invalid]}
      - {name: icmp, priority: 5, action: allow, protocol: icmp}
    """)
)


def test_each_state_as_the_entries_imply(namespace: str, tmp_path: Path) -> None:
    batch = crafted_frames()
    states = {model_state(p) if p.tracked else None for p in map(parse, batch)}
    assert states == {"new", "established", "related", "invalid", None}
    check_against_evaluator(namespace, BY_STATE, batch, tmp_path)


def test_state_rules_after_a_catch_all_are_never_asked(namespace: str, tmp_path: Path) -> None:
    """Rules without state decide alone: a state rule after them changes nothing."""
    policy = policy_of(
        "name: t\ndefault_action: deny\nrules:\n"
        "  - {name: all, priority: 1, action: allow}\n"
        "  - {name: est, priority: 2, action: deny, state: [established]}\n"
    )
    check_against_evaluator(namespace, policy, crafted_frames(), tmp_path)


STATE_LISTS = (
    ["established", "related"],
    ["new"],
    ["invalid"],
    ["related"],
    ["established"],
    ["new", "invalid"],
    ["new", "established", "related", "invalid"],
)


@st.composite
def state_policies(draw: st.DrawFn) -> Policy:
    """Random policies whose rules often name states, fewer address constraints."""
    doc: dict[str, Any] = draw(policy_documents(max_rules=8))
    for rule in doc["rules"]:
        if draw(st.integers(0, 2)):
            rule.pop("source_cidrs", None)
            rule.pop("destination_cidrs", None)
        if draw(st.integers(0, 2)):
            rule["state"] = draw(st.sampled_from(STATE_LISTS))
    return policy_from_document(doc)


@settings(
    max_examples=10,
    deadline=None,
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.function_scoped_fixture,
    ],
)
@given(policy=state_policies(), data=st.data())
def test_random_state_policies_equal_evaluator(
    namespace: str, policy: Policy, data: st.DataObject, tmp_path_factory: pytest.TempPathFactory
) -> None:
    crafted = crafted_frames()
    drawn = data.draw(
        st.lists(
            st.one_of(st.sampled_from(crafted), valid_frames(policy)), min_size=24, max_size=24
        )
    )
    check_against_evaluator(namespace, policy, drawn, tmp_path_factory.mktemp("state"))


# Real traffic over the namespace's loopback, tracked because a table references ct state.
TRAFFIC = """
import socket
udp_server = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
udp_server.bind(("127.0.0.1", 7001))
udp_client = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
udp_client.bind(("127.0.0.1", 7002))
udp_client.sendto(b"ping", ("127.0.0.1", 7001))
data, peer = udp_server.recvfrom(16)
udp_server.sendto(b"pong", peer)
udp_client.recvfrom(16)
listener = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
listener.bind(("::1", 7003))
listener.listen(1)
client = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
client.bind(("::1", 7004))
client.connect(("::1", 7003))
conn, _ = listener.accept()
conn.sendall(b"hello")
client.recv(16)
udp_client.sendto(b"once", ("127.0.0.1", 7005))  # nobody answers: no reply seen
"""

NFT_TRACK = """
table inet {table} {{
    chain pre {{
        type filter hook prerouting priority -300; policy accept;
        ct state established counter
    }}
}}
"""


def test_real_connections_over_loopback(tmp_path: Path) -> None:
    ns = f"fwcsr{unique('')}"
    try:
        sh("ip", "netns", "add", ns)
        sh("ip", "-n", ns, "link", "set", "lo", "up")
        table = NFT_TRACK.format(table=f"fwct{unique('')}")
        done = subprocess.run(
            ["ip", "netns", "exec", ns, "nft", "-f", "-"],
            input=table,
            capture_output=True,
            text=True,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        sh("ip", "netns", "exec", ns, sys.executable, "-c", TRAFFIC)
        listed = sh("ip", "netns", "exec", ns, "conntrack", "-L").stdout
        assert "dport=7003" in listed and "dport=7001" in listed, listed
        cases = [
            (ip_frame(UDP, "127.0.0.1", "127.0.0.1", 7002, 7001), "established"),
            (ip_frame(UDP, "127.0.0.1", "127.0.0.1", 7001, 7002), "established"),
            (ip_frame(UDP, "127.0.0.1", "127.0.0.1", 7002, 7005), "new"),
            (ip_frame(UDP, "127.0.0.1", "127.0.0.1", 7005, 7002), "established"),
            (ip_frame(UDP, "127.0.0.1", "127.0.0.1", 7002, 7006), "new"),
            (ip_frame(TCP, "::1", "::1", 7004, 7003), "established"),
            (ip_frame(TCP, "::1", "::1", 7003, 7004), "established"),
            (ip_frame(TCP, "::1", "::1", 7004, 7009), "new"),
            (icmp_error(TCP, "::1", "::1", 7004, 7003), "related"),
            (icmp_error(UDP, "127.0.0.1", "127.0.0.1", 7002, 7001), "related"),
            (icmp_error(UDP, "127.0.0.1", "127.0.0.1", 7002, 7008), "invalid"),
        ]
        for strategy in STRATEGIES:
            result = compile_policy(BY_STATE, output=tmp_path / f"{strategy}.o", strategy=strategy)
            got = kernel_outcomes(ns, result.path, [frame for frame, _ in cases])
            for (frame, state), (verdict, rule) in zip(cases, got, strict=True):
                want = evaluate(BY_STATE, frame, ct_state=state)
                assert (verdict, rule) == (want.xdp_action, want.decided_by), (
                    f"{strategy}: {state} frame {frame.hex()}: kernel {verdict} by {rule}"
                )
    finally:
        sh("ip", "netns", "del", ns, check=False)
