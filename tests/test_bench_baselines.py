"""The expert netfilter baselines give the reference evaluator's verdict on every bench frame,
so the peer benchmark compares fwc with filters that decide the same way."""

from __future__ import annotations

import itertools
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from fwc.compiler.oracle.evaluate import XDP_PASS, evaluate
from fwc.compiler.oracle.frames import build_frame, fields_from_mapping
from fwc.compiler.policy.ir import Policy

BENCH = Path(__file__).resolve().parent.parent / "bench"
sys.path.insert(0, str(BENCH))

from baselines import BUILDERS, shape  # noqa: E402
from layers import levels, overlap  # noqa: E402
from netfilter import baseline_loaded, passed_frames  # noqa: E402
from netns import RX_DEV, Pair, veth_pair  # noqa: E402

from policies import _matches, load_policy, make_packets, make_policy_yaml  # noqa: E402

# Every shape the translations know, and rules none of them holds (plain rules).
POLICY = """\
name: shapes
default_action: deny
rules:
  - {name: bad_v4, priority: 1, action: deny, source_cidrs: ["198.51.100.0/24", "10.9.0.0/16"]}
  - {name: ssh, priority: 2, action: allow, protocol: tcp,
     source_cidrs: ["10.0.0.0/8", "2001:db8::/32"], destination_ports: [22, "8000-8099"]}
  - {name: nested_deny, priority: 3, action: deny, protocol: tcp,
     source_cidrs: ["10.20.0.0/16"], destination_ports: ["8000-8010"]}
  - {name: no_syn, priority: 4, action: deny, protocol: tcp, source_cidrs: ["10.0.0.0/8"],
     destination_ports: [443], tcp_flags: "SYN,!ACK"}
  - {name: dns, priority: 5, action: allow, protocol: udp, source_cidrs: ["10.0.0.0/8"],
     source_ports: [53]}
  - {name: ping, priority: 6, action: allow, protocol: icmp, source_cidrs: ["10.0.0.0/8"],
     icmp_types: [8]}
  - {name: nd, priority: 7, action: allow, protocol: icmpv6, source_cidrs: ["2001:db8::/32"],
     icmp_types: [135, 128]}
  - {name: to_db, priority: 8, action: allow, protocol: tcp, source_cidrs: ["172.16.0.0/12"],
     destination_cidrs: ["192.0.2.0/24"], destination_ports: [5432]}
  - {name: web_any, priority: 9, action: allow, protocol: tcp, destination_ports: [80]}
  - {name: both_ports, priority: 10, action: allow, protocol: udp, source_cidrs: ["10.0.0.0/8"],
     source_ports: [123], destination_ports: [123]}
"""

CASES: list[dict[str, object]] = [
    {"proto": "udp", "src": "198.51.100.7"},
    {"proto": "tcp", "src": "10.9.1.1", "dport": 22},
    {"proto": "tcp", "src": "10.1.2.3", "dport": 22},
    {"proto": "tcp", "src": "10.20.2.3", "dport": 8005},
    {"proto": "tcp", "src": "10.21.2.3", "dport": 8005},
    {"proto": "tcp", "src": "2001:db8::9", "dport": 8099},
    {"proto": "tcp", "src": "10.1.1.1", "dport": 443, "flags": "SYN"},
    {"proto": "tcp", "src": "10.1.1.1", "dport": 443, "flags": "SYN,ACK"},
    {"proto": "udp", "src": "10.1.1.1", "sport": 53, "dport": 40000},
    {"proto": "udp", "src": "10.1.1.1", "sport": 123, "dport": 123},
    {"proto": "udp", "src": "10.1.1.1", "sport": 123, "dport": 124},
    {"proto": "icmp", "src": "10.1.1.1", "icmp_type": 8},
    {"proto": "icmp", "src": "10.1.1.1", "icmp_type": 0},
    {"proto": "icmpv6", "src": "2001:db8::1", "icmp_type": 128},
    {"proto": "icmpv6", "src": "2001:db9::1", "icmp_type": 128},
    {"proto": "tcp", "src": "172.16.1.1", "dst": "192.0.2.9", "dport": 5432},
    {"proto": "tcp", "src": "172.16.1.1", "dst": "192.0.3.9", "dport": 5432},
    {"proto": "tcp", "src": "203.0.113.1", "dport": 80},
    {"proto": "tcp", "src": "2001:db9::1", "dport": 80, "ext_headers": ["hop", "dest"]},
    {"proto": "tcp", "src": "203.0.113.1", "dport": 81},
    {"proto": "udp", "src": "fd00::1", "dport": 80},
]


def _frames(policy_text: str, seed: int, per_label: int) -> tuple[Policy, list[bytes]]:
    policy = load_policy(policy_text)
    return policy, [p.frame for p in make_packets(policy, seed, per_label=per_label)]


@pytest.fixture(scope="module")
def pair() -> Iterator[Pair]:
    with veth_pair() as p:
        yield p


SUITES: dict[str, Callable[[], tuple[Policy, list[bytes]]]] = {
    "shapes": lambda: (
        load_policy(POLICY),
        [build_frame(fields_from_mapping(c)) for c in CASES],
    ),
    "bench-50": lambda: _frames(make_policy_yaml(50, 3), 3, 12),
    "bench-200": lambda: _frames(make_policy_yaml(200, 7), 7, 16),
}


@pytest.mark.parametrize("baseline", sorted(BUILDERS))
@pytest.mark.parametrize("suite", sorted(SUITES))
def test_baseline_verdicts_match_the_reference(pair: Pair, baseline: str, suite: str) -> None:
    policy, frames = SUITES[suite]()
    want = [evaluate(policy, f).xdp_action == XDP_PASS for f in frames]
    assert any(want) and not all(want)
    built = BUILDERS[baseline](policy, RX_DEV)
    with baseline_loaded(pair, built):
        got = passed_frames(pair, frames)
    wrong = [i for i, (g, w) in enumerate(zip(got, want, strict=True)) if g != w]
    assert not wrong, f"{baseline}: frames {wrong} ({built.summary})"


def test_every_shape_is_used_and_some_rules_stay_plain() -> None:
    policy = load_policy(POLICY)
    shapes = {r.name: shape(r) for r in policy.rules}
    assert shapes == {
        "bad_v4": "src",
        "ssh": "src.dport",
        "nested_deny": "src.dport",
        "no_syn": "src.dport",
        "dns": "src.sport",
        "ping": "src.icmp",
        "nd": "src.icmp",
        "to_db": "src.dst.dport",
        "web_any": "plain",
        "both_ports": "plain",
    }


def test_levels_put_conflicting_rules_apart() -> None:
    policy = load_policy(make_policy_yaml(300, 5))
    rules = policy.rules
    level = levels(rules, lambda a, b: a.action is not b.action)
    for i, j in itertools.combinations(range(len(rules)), 2):
        if rules[i].action is not rules[j].action and overlap(rules[i], rules[j]):
            assert level[i] < level[j], (rules[i].name, rules[j].name)


def test_overlap_never_misses_a_packet_both_rules_match() -> None:
    policy = load_policy(make_policy_yaml(300, 9))
    for packet in make_packets(policy, 9, per_label=40):
        hits = [r for r in policy.rules if _matches(r, packet.fields)]
        for a, b in itertools.combinations(hits, 2):
            assert overlap(a, b), (a.name, b.name)


def test_live_frames_reach_the_receivers_xdp_program(pair: Pair, tmp_path: Path) -> None:
    """bench_peers.py's harness: every frame BPF_PROG_RUN writes in live-frame mode arrives
    at the receiver's XDP program (here one that drops), none lost on the way; a kernel that
    refuses the mode gets one clear error and nothing is sent."""
    from bench_peers import LiveFramesRefused, Sender
    from live import build
    from macro_veth import xdp_attached
    from netns import xdp_drops

    obj = build(tmp_path)
    frames = tmp_path / "frames.hex"
    frames.write_text("\n".join(build_frame(fields_from_mapping(c)).hex() for c in CASES))
    with xdp_attached(pair, "live_drop", obj, tmp_path):
        before = xdp_drops(pair)
        sender = Sender(pair, obj)
        try:
            ns = sender.send(frames, 10_000)
        except LiveFramesRefused as exc:
            assert "Operation not permitted" in str(exc)
            assert xdp_drops(pair) == before
            return
        finally:
            sender.close()
        assert xdp_drops(pair) - before == 10_000
    assert ns > 0
