"""The rule-loop baseline agrees with the reference evaluator, so the benchmark is fair."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from fwc.compiler.oracle.evaluate import evaluate
from fwc.compiler.oracle.frames import build_frame, fields_from_mapping

BENCH = Path(__file__).resolve().parent.parent / "bench"
sys.path.insert(0, str(BENCH))

from rule_loop import BPF_LOOP, FOR_LOOP, PARSE_ONLY, RuleLoop  # noqa: E402

from policies import load_policy, make_policy_yaml, make_traffic  # noqa: E402

POLICY = """\
name: smoke
default_action: deny
rules:
  - {name: drop_bad, priority: 1, action: deny,
     source_cidrs: ["198.51.100.0/24", "2001:db8:bad::/48"]}
  - {name: ssh, priority: 2, action: allow, protocol: tcp, source_cidrs: ["10.20.0.0/16"],
     destination_ports: [22]}
  - {name: web, priority: 3, action: allow, protocol: tcp, destination_ports: [80, "8000-8099"]}
  - {name: no_syn, priority: 4, action: deny, protocol: tcp, tcp_flags: "SYN,!ACK"}
  - {name: dns, priority: 5, action: allow, protocol: udp, source_ports: [53]}
  - {name: ping, priority: 6, action: allow, protocol: icmp, icmp_types: [8]}
  - {name: nd, priority: 7, action: allow, protocol: icmpv6, icmp_types: [135, 136]}
  - {name: v6_mixed, priority: 8, action: allow, source_cidrs: ["fd00::/8"],
     destination_cidrs: ["10.0.0.0/8"]}
"""

# (packet fields, expected deciding rule): one case per rule and the ways around it.
CASES = [
    ({"proto": "udp", "src": "198.51.100.7"}, "drop_bad"),
    ({"proto": "tcp", "src": "2001:db8:bad::1", "dport": 22}, "drop_bad"),
    ({"proto": "tcp", "src": "10.20.3.4", "dport": 22}, "ssh"),
    ({"proto": "tcp", "src": "10.21.3.4", "dport": 22, "flags": "ACK"}, "default"),
    ({"proto": "tcp", "src": "2001:db8::5", "dport": 8042}, "web"),
    ({"proto": "tcp", "dport": 443, "flags": "SYN"}, "no_syn"),
    ({"proto": "tcp", "dport": 443, "flags": "SYN,ACK"}, "default"),
    ({"proto": "udp", "sport": 53, "dport": 40000}, "dns"),
    ({"proto": "udp", "sport": 53, "fragment": "non-first"}, "default"),
    ({"proto": "icmp", "icmp_type": 8}, "ping"),
    ({"proto": "icmp", "icmp_type": 0}, "default"),
    ({"proto": "icmpv6", "icmp_type": 135, "vlan": 7}, "nd"),
    ({"proto": "udp", "src": "fd00::1", "dst": "fd00::2"}, "default"),
    ({"proto": "tcp", "dport": 80, "ip_options": 8}, "web"),
    ({"proto": "tcp", "src": "2001:db8::1", "dport": 80, "ext_headers": ["hop", "dest"]}, "web"),
]


@pytest.fixture(scope="module")
def out_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("rule-loop")


@pytest.mark.kernel
@pytest.mark.parametrize("variant", [FOR_LOOP, BPF_LOOP], ids=["for", "bpf_loop"])
def test_rule_loop_matches_the_evaluator(variant: object, out_dir: Path) -> None:
    policy = load_policy(POLICY)
    with RuleLoop.for_policy(policy, variant, out_dir) as prog:  # type: ignore[arg-type]
        for fields, rule in CASES:
            frame = build_frame(fields_from_mapping(fields))
            expected = evaluate(policy, frame)
            assert expected.decided_by == rule, fields
            assert prog.test_run(frame)[0] == expected.xdp_action, fields


@pytest.mark.kernel
def test_generated_traffic_gets_the_evaluators_verdict(out_dir: Path) -> None:
    policy = load_policy(make_policy_yaml(60, seed=3))
    traffic = make_traffic(policy, seed=3, per_label=6)
    assert {label for label, _ in traffic} == {"first", "late", "default"}
    with RuleLoop.for_policy(policy, FOR_LOOP, out_dir) as prog:
        for label, frame in traffic:
            assert prog.test_run(frame)[0] == evaluate(policy, frame).xdp_action, label
        passed, dropped = prog.stats()
        assert passed + dropped == len(traffic)


@pytest.mark.kernel
def test_parse_only_passes_everything(out_dir: Path) -> None:
    policy = load_policy(POLICY)
    with RuleLoop.for_policy(policy, PARSE_ONLY, out_dir) as prog:
        for fields, _ in CASES[:3]:
            assert prog.test_run(build_frame(fields_from_mapping(fields)))[0] == 2
