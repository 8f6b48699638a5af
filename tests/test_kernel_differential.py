"""The compiled program in the kernel against the reference evaluator, frame by frame."""

from __future__ import annotations

import collections
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fwc.compiler.backend.build import compile_policy
from fwc.compiler.backend.plan import rate_limit_slots
from fwc.compiler.oracle import frames as fr
from fwc.compiler.oracle.evaluate import evaluate
from fwc.compiler.policy.ir import Policy
from fwc.loader.kernel.program import LoadedProgram
from tests.compile_helpers import policy_file
from tests.strategies import frames, policies

pytestmark = pytest.mark.kernel

ROOT = Path(__file__).resolve().parent.parent
ETH_HLEN = 14  # BPF_PROG_TEST_RUN refuses shorter XDP input
FRAMES_PER_POLICY = 40


def check_frames(policy: Policy, batch: list[bytes], dry_run: bool, out: Path) -> None:
    """Every frame gets the evaluator's action, and the counters add up slot by slot.

    Rate-limit rules carry bursts far above len(batch), so their buckets never run dry
    and the evaluator's full bucket is exact.
    """
    assert all(r.rate_limit_burst is None or r.rate_limit_burst > len(batch) for r in policy.rules)
    result = compile_policy(policy, output=out, strategy="constants", dry_run=dry_run)
    want: collections.Counter[tuple[int, str]] = collections.Counter()
    n = len(policy.rules)
    # a rate_limit rule's frames also count in its pass slot (its bucket never runs dry here)
    limited = rate_limit_slots(policy)
    with LoadedProgram.load(result.path) as prog:
        for frame in batch:
            verdict = evaluate(policy, frame, dry_run=dry_run)
            got = prog.test_run(frame).retval
            assert got == verdict.xdp_action, (
                f"frame {frame.hex()}: kernel {got}, evaluator {verdict.xdp_action} "
                f"({verdict.decided_by}, dry_run={dry_run})"
            )
            passed = [limited[verdict.counter_slot]] if verdict.counter_slot in limited else []
            extra = [n + 3] if verdict.would_drop else []
            for slot in (verdict.counter_slot, *passed, *extra):
                want[(slot, "packets")] += 1
                want[(slot, "bytes")] += len(frame)
        counters = prog.counters()
    for slot, (packets, size) in enumerate(counters):
        assert (packets, size) == (want[(slot, "packets")], want[(slot, "bytes")]), slot


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(
    policy=policies(max_rules=15, rate_limit=True),
    dry_run=st.booleans(),
    batch=st.data(),
)
def test_random_policies_and_frames(
    policy: Policy, dry_run: bool, batch: st.DataObject, tmp_path_factory: pytest.TempPathFactory
) -> None:
    drawn = batch.draw(
        st.lists(frames(policy), min_size=FRAMES_PER_POLICY, max_size=FRAMES_PER_POLICY)
    )
    runnable = [f for f in drawn if len(f) >= ETH_HLEN]
    check_frames(policy, runnable, dry_run, tmp_path_factory.mktemp("diff") / "fw.o")


V4_SRC, V4_DST = 0xC6336401, 0xC0000202  # 198.51.100.1 (blocklist), 192.0.2.2
WEB = fr.tcp(40000, 443, 0x02)


def pkt(**fields: object) -> bytes:
    return fr.build_frame(fr.fields_from_mapping(fields))


def ipv6_chain(headers: list[int], l4: int, body: bytes, src: int = 0x20010DB8 << 96) -> bytes:
    """An IPv6 frame whose extension headers carry the given next-header numbers, in order."""
    chain = [*headers[1:], l4]
    for kind, nxt in reversed(list(zip(headers, chain, strict=True))):
        body = (fr.fragment_header(nxt, 0, False) if kind == 44 else fr.ext_header(nxt)) + body
    first = headers[0] if headers else l4
    return fr.ethernet(fr.ETH_P_IPV6) + fr.ipv6(src, 2, first, body)


# (what the row shows, frame, what decides: a rule name, "default", "malformed" or "non_ip")
EDGE_TABLE: list[tuple[str, bytes, str]] = [
    ("https", pkt(proto="tcp", dport=443), "allow_web"),
    ("web range edge", pkt(proto="tcp", dport=8099), "allow_web"),
    ("just past the range", pkt(proto="tcp", dport=8100, flags="SYN"), "default"),
    ("ssh from mgmt v6", pkt(proto="tcp", src="fd00:20::5", dport=22), "allow_ssh_from_mgmt"),
    ("ssh from elsewhere", pkt(proto="tcp", src="10.21.0.1", dport=22, flags="SYN"), "default"),
    ("blocklisted v4", pkt(proto="tcp", src="198.51.100.9", dport=443), "drop_blocklist"),
    ("blocklisted v6", pkt(proto="udp", src="2001:db8:bad::1", sport=53), "drop_blocklist"),
    ("two vlan tags", pkt(proto="tcp", dport=443, vlan=[10, 20]), "allow_web"),
    ("ip options", pkt(proto="tcp", dport=443, ip_options=40), "allow_web"),
    ("dns reply", pkt(proto="udp", sport=53, dport=5353), "allow_dns_replies"),
    ("established", pkt(proto="tcp", dport=9999, flags="ACK"), "allow_tcp_established"),
    ("ping", pkt(proto="icmp", icmp_type=8), "allow_ping"),
    ("icmp type on icmpv6", pkt(proto="icmpv6", icmp_type=8), "default"),
    ("neighbour solicitation", pkt(proto="icmpv6", icmp_type=135), "allow_icmpv6_essentials"),
    ("non-first v4 fragment", pkt(proto="tcp", dport=443, fragment="non-first"), "default"),
    ("first v4 fragment", pkt(proto="tcp", dport=443, fragment="first"), "allow_web"),
    (
        "v6 ext chain then tcp",
        pkt(proto="tcp", src="2001:db8::1", dport=443, ext_headers=["hop", "routing", "dest"]),
        "allow_web",
    ),
    (
        "v6 non-first fragment",
        pkt(proto="tcp", src="2001:db8::1", dport=443, fragment="non-first"),
        "default",
    ),
    ("8 extension headers", ipv6_chain([0] + [60] * 7, 6, WEB), "allow_web"),
    ("9 extension headers", ipv6_chain([0] + [60] * 8, 6, WEB), "malformed"),
    ("arp", fr.ethernet(0x0806) + bytes(28), "non_ip"),
    ("three vlan tags", fr.ethernet(fr.ETH_P_IP, [1, 2, 3]) + bytes(40), "non_ip"),
    ("cut in a vlan tag", fr.ethernet(0x8100)[:16], "malformed"),
    ("ipv4 ihl 4", fr.ethernet(fr.ETH_P_IP) + fr.ipv4(V4_SRC, V4_DST, 6, WEB, ihl=4), "malformed"),
    (
        "total length too long",
        fr.ethernet(fr.ETH_P_IP) + fr.ipv4(1, V4_DST, 6, WEB, total_length=200),
        "malformed",
    ),
    (
        "trailing padding",
        fr.ethernet(fr.ETH_P_IP) + fr.ipv4(1, V4_DST, 6, WEB) + bytes(30),
        "allow_web",
    ),
    (
        "tcp data offset 4",
        fr.ethernet(fr.ETH_P_IP) + fr.ipv4(1, V4_DST, 6, fr.tcp(1, 443, 2, data_offset=4)),
        "malformed",
    ),
    ("udp cut short", fr.ethernet(fr.ETH_P_IP) + fr.ipv4(1, V4_DST, 17, bytes(7)), "malformed"),
    ("unknown protocol", fr.ethernet(fr.ETH_P_IP) + fr.ipv4(1, V4_DST, 200, b""), "default"),
    ("ipv6 version 4", pkt(proto="tcp", src="2001:db8::1")[:14] + b"\x40" + bytes(60), "malformed"),
]


@pytest.mark.parametrize("dry_run", [False, True])
def test_edge_web_hostile_table(dry_run: bool, tmp_path: Path) -> None:
    policy = policy_file(str(ROOT / "policies" / "edge-web.yaml"))
    for what, frame, decided_by in EDGE_TABLE:
        assert evaluate(policy, frame).decided_by == decided_by, what
    check_frames(policy, [row[1] for row in EDGE_TABLE], dry_run, tmp_path / "fw.o")
