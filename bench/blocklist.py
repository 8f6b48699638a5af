"""The blocklist bench policy: one `deny src: $blocklist` rule over N CIDRs, and a few services.

`make_blocklist(n, seed)` is deterministic. The set mixes IPv4 and IPv6 the way reputation
lists do: mostly hosts and /24s (IPv4), /48s to /128s (IPv6), some wider aggregates, and a
share of prefixes nested inside other entries of the list.
"""

from __future__ import annotations

import ipaddress
import random

# (prefix length, weight) for IPv4 and IPv6 entries.
_V4_LENGTHS = ((32, 55), (24, 25), (28, 5), (22, 5), (20, 4), (16, 3), (30, 3))
_V6_LENGTHS = ((128, 30), (64, 30), (48, 25), (56, 8), (40, 4), (32, 3))
V6_SHARE = 0.3
NESTED_SHARE = 0.05

# Outside every blocklist entry: the service rules' sources and the bench's passing traffic.
CLEAN_V4 = ipaddress.IPv4Network("10.0.0.0/8")
CLEAN_V6 = ipaddress.IPv6Network("fd00::/8")

SERVICES = (
    ("allow_ssh_mgmt", "tcp", ["$mgmt_nets"], [22]),
    ("allow_web", "tcp", [], [80, 443]),
    ("allow_dns", "udp", [], [53]),
    ("allow_ntp", "udp", [], [123]),
)


def _v4(rng: random.Random, plen: int) -> str:
    while True:
        value = rng.getrandbits(32)
        first = value >> 24
        # Public unicast only, and never the clean pools.
        if first in (0, 10, 127) or first >= 224:
            continue
        net = ipaddress.IPv4Network((value & ~((1 << (32 - plen)) - 1) & 0xFFFFFFFF, plen))
        return str(net)


def _v6(rng: random.Random, plen: int) -> str:
    # Global unicast 2000::/3, never the clean fd00::/8.
    value = (0x2 << 124) | rng.getrandbits(125) & ((1 << 125) - 1)
    value &= ((1 << 128) - 1) ^ ((1 << (128 - plen)) - 1)
    return str(ipaddress.IPv6Network((value, plen)))


def _nested(rng: random.Random, outer: str) -> str:
    net = ipaddress.ip_network(outer)
    extra = rng.randint(1, min(16, net.max_prefixlen - net.prefixlen))
    plen = net.prefixlen + extra
    offset = rng.getrandbits(extra) << (net.max_prefixlen - plen)
    return str(ipaddress.ip_network((int(net.network_address) + offset, plen)))


def make_cidrs(n: int, seed: int = 15) -> list[str]:
    """`n` distinct CIDRs, mixed families, some nested in others."""
    rng = random.Random(seed)
    v4_lengths = [p for p, _ in _V4_LENGTHS], [w for _, w in _V4_LENGTHS]
    v6_lengths = [p for p, _ in _V6_LENGTHS], [w for _, w in _V6_LENGTHS]
    out: list[str] = []
    seen: set[str] = set()
    wide: list[str] = []
    while len(out) < n:
        if wide and rng.random() < NESTED_SHARE:
            cidr = _nested(rng, rng.choice(wide))
        elif rng.random() < V6_SHARE:
            plen = rng.choices(*v6_lengths)[0]
            cidr = _v6(rng, plen)
        else:
            plen = rng.choices(*v4_lengths)[0]
            cidr = _v4(rng, plen)
        if cidr in seen:
            continue
        seen.add(cidr)
        out.append(cidr)
        if (":" in cidr and int(cidr.rsplit("/", 1)[1]) <= 56) or (
            ":" not in cidr and int(cidr.rsplit("/", 1)[1]) <= 24
        ):
            wide.append(cidr)
    return out


def make_blocklist_yaml(n: int, seed: int = 15) -> str:
    """The bench policy text: the blocklist rule first, then the services, default deny."""
    lines = ["version: 1", f"name: blocklist-{n}", "default_action: deny", "sets:"]
    lines.append('  mgmt_nets: ["10.20.0.0/16", "fd00:20::/48"]')
    lines.append("  blocklist:")
    lines.extend(f"    - {c}" for c in make_cidrs(n, seed))
    lines.append("rules:")
    lines += [
        "  - name: deny_blocklist",
        "    priority: 10",
        "    action: deny",
        '    source_cidrs: ["$blocklist"]',
        "    description: reputation list",
    ]
    for i, (name, proto, srcs, ports) in enumerate(SERVICES):
        lines += [
            f"  - name: {name}",
            f"    priority: {100 + i}",
            "    action: allow",
            f"    protocol: {proto}",
            f"    source_cidrs: {srcs!r}".replace("'", '"'),
            f"    destination_ports: {ports!r}",
            f"    description: {name.replace('_', ' ')}",
        ]
    return "\n".join(lines) + "\n"
