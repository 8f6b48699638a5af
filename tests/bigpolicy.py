"""Large generated policies for the verifier and benchmark tests: both families, port ranges."""

from __future__ import annotations

import ipaddress

import yaml

from fwc.compiler.policy.findings import has_errors
from fwc.compiler.policy.ir import Policy
from fwc.compiler.policy.normalize import normalize
from fwc.compiler.policy.source import load_bytes


def rule_source(i: int) -> str:
    """Rule i's source network: even rules IPv4 10.x.y.0/24, odd rules IPv6 fd00:i::/48."""
    if i % 2 == 0:
        return str(ipaddress.IPv4Network((0x0A000000 + (i << 8), 24)))
    return str(ipaddress.IPv6Network(((0xFD00 << 112) + (i << 80), 48)))


def rule_ports(i: int) -> tuple[int, int]:
    first = 1024 + (i * 7) % 60000
    return first, first + 5


def big_policy_text(n: int, default_action: str = "allow") -> str:
    rules = []
    for i in range(n):
        lo, hi = rule_ports(i)
        rules.append(
            {
                "name": f"r{i:05d}",
                "priority": i,
                "action": "deny" if i % 3 else "allow",
                "protocol": "tcp" if i % 4 < 2 else "udp",
                "source_cidrs": [rule_source(i)],
                "destination_ports": [f"{lo}-{hi}", 9 + i % 1000],
            }
        )
    doc = {"version": 1, "name": f"big-{n}", "default_action": default_action, "rules": rules}
    return yaml.safe_dump(doc, sort_keys=False)


def big_policy(n: int, default_action: str = "allow") -> Policy:
    loaded, findings = load_bytes(big_policy_text(n, default_action).encode(), f"big-{n}.yaml")
    assert loaded is not None, findings
    policy, more = normalize(loaded)
    assert policy is not None and not has_errors(more), more
    return policy
