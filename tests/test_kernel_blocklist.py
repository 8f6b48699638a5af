"""The blocklist program in the kernel against the reference evaluator: a bench blocklist
policy (thousands of nested CIDRs of both families, then services), and frames sampled
inside entries, just outside them, at their edges and in the clean pools."""

from __future__ import annotations

import ipaddress
import random
import sys
from pathlib import Path

import pytest

from fwc.compiler.backend.build import compile_policy
from fwc.compiler.oracle.evaluate import XDP_DROP, XDP_PASS, evaluate
from fwc.compiler.oracle.frames import PacketFields, build_frame
from fwc.compiler.policy.ir import IPPROTO_TCP, IPPROTO_UDP, AddressRange, Family
from fwc.loader.kernel.program import LoadedProgram
from tests.compile_helpers import policy_of

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))
from blocklist import CLEAN_V4, CLEAN_V6, make_blocklist_yaml

pytestmark = pytest.mark.kernel

ENTRIES = 20_000
SAMPLES = 3_000
SERVICES = ((IPPROTO_TCP, 22), (IPPROTO_TCP, 80), (IPPROTO_TCP, 443), (IPPROTO_UDP, 53))


def _addresses(entries: tuple[AddressRange, ...], rng: random.Random) -> list[tuple[Family, int]]:
    """Per sampled entry: its first and last address, one inside, and the addresses just
    below and above it (outside, unless a neighbour or an enclosing entry holds them)."""
    out: list[tuple[Family, int]] = []
    for entry in rng.sample(entries, SAMPLES // 5):
        top = (1 << entry.family.width) - 1
        picks = (entry.first, entry.last, rng.randint(entry.first, entry.last))
        edges = (entry.first - 1, entry.last + 1)
        out += [(entry.family, a) for a in (*picks, *edges) if 0 <= a <= top]
    for pool, family in ((CLEAN_V4, Family.IPV4), (CLEAN_V6, Family.IPV6)):
        first = int(pool.network_address)
        out += [
            (family, first + rng.getrandbits(pool.max_prefixlen - pool.prefixlen))
            for _ in range(200)
        ]
    return out


def _frame(family: Family, src: int, protocol: int, port: int) -> bytes:
    dst = int(ipaddress.ip_address("192.0.2.1" if family is Family.IPV4 else "2001:db8::1"))
    return build_frame(PacketFields(family, protocol, src, dst, dport=port))


def test_blocklist_verdicts_match_the_evaluator(tmp_path: Path) -> None:
    policy = policy_of(make_blocklist_yaml(ENTRIES), "blocklist.yaml")
    result = compile_policy(policy, output=tmp_path / "blocklist.o", strategy="tables")
    rng = random.Random(15)
    blocklist = dict(policy.sets)["blocklist"]
    assert isinstance(blocklist[0], AddressRange)
    seen = {XDP_DROP: 0, XDP_PASS: 0}
    with LoadedProgram.load(result.path) as program:
        for family, src in _addresses(blocklist, rng):  # type: ignore[arg-type]
            protocol, port = rng.choice(SERVICES)
            frame = _frame(family, src, protocol, port)
            want = evaluate(policy, frame).xdp_action
            assert program.test_run(frame).retval == want, (family, hex(src), protocol, port)
            seen[want] += 1
    # both verdicts were exercised, from blocklisted and from clean sources
    assert seen[XDP_DROP] > SAMPLES // 2 and seen[XDP_PASS] > 100, seen
