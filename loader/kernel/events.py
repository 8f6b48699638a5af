"""Verdict events of `log: true` rules: `struct fwc_event` (templates/bpf/fwc_log.h) decoded."""

from __future__ import annotations

import ipaddress
import struct
from dataclasses import dataclass
from typing import Any

from fwc.terminal import escape

# time_ns, rule, action, dry_run, family, proto, src_hi, src_lo, dst_hi, dst_lo,
# sport, dport, l4, tcp_flags, icmp_type, pad: native order, as the program writes it
_EVENT = struct.Struct("=QIBBBBQQQQHHBBBx")
EVENT_SIZE = _EVENT.size
XDP_DROP, XDP_PASS = 1, 2
_PROTOCOLS = {1: "icmp", 6: "tcp", 17: "udp", 58: "icmpv6"}


@dataclass(frozen=True)
class Event:
    """One verdict a logging rule reported."""

    time_ns: int  # CLOCK_MONOTONIC
    rule_id: int
    rule: str  # the rule's name from the manifest, or "#<id>" when it lists no such rule
    verdict: str  # "pass", "drop", or "would_drop" (a drop in dry-run: the packet passed)
    family: int
    protocol: int
    src: str
    dst: str
    sport: int | None  # TCP and UDP only
    dport: int | None
    tcp_flags: int | None  # TCP only
    icmp_type: int | None  # ICMP and ICMPv6 only

    def to_json(self) -> dict[str, Any]:
        return {
            "time_ns": self.time_ns,
            "rule_id": self.rule_id,
            "rule": self.rule,
            "verdict": self.verdict,
            "family": self.family,
            "protocol": self.protocol,
            "src": self.src,
            "dst": self.dst,
            "sport": self.sport,
            "dport": self.dport,
            "tcp_flags": self.tcp_flags,
            "icmp_type": self.icmp_type,
        }

    def text(self, when: str | None = None) -> str:
        """One line; `when` (a wall-clock time) in place of the monotonic seconds."""
        proto = _PROTOCOLS.get(self.protocol, str(self.protocol))
        src, dst = _endpoint(self.src, self.sport), _endpoint(self.dst, self.dport)
        parts = [
            when or f"{self.time_ns / 1e9:.6f}",
            self.verdict,
            f"rule {self.rule}",
            proto,
            src,
            "->",
        ]
        parts.append(dst)
        if self.tcp_flags is not None:
            parts.append(f"flags 0x{self.tcp_flags:02x}")
        if self.icmp_type is not None:
            parts.append(f"type {self.icmp_type}")
        return escape(" ".join(parts))


class EventError(ValueError):
    """A ring buffer record that is not an fwc event."""


def decode(record: bytes, rule_names: list[str]) -> Event:
    """The event in `record`; `rule_names[i]` names rule id i."""
    if len(record) != EVENT_SIZE:
        raise EventError(f"an event record has {EVENT_SIZE} bytes, this one {len(record)}")
    (time_ns, rule, action, dry_run, family, proto, src_hi, src_lo, dst_hi, dst_lo, sport, dport,
     l4, tcp_flags, icmp_type) = _EVENT.unpack(record)  # fmt: skip
    verdict = "pass" if action == XDP_PASS else "would_drop" if dry_run else "drop"
    ports = bool(l4) and proto in (6, 17)
    return Event(
        time_ns=time_ns,
        rule_id=rule,
        rule=rule_names[rule] if rule < len(rule_names) else f"#{rule}",
        verdict=verdict,
        family=family,
        protocol=proto,
        src=_address(family, src_hi, src_lo),
        dst=_address(family, dst_hi, dst_lo),
        sport=sport if ports else None,
        dport=dport if ports else None,
        tcp_flags=tcp_flags if l4 and proto == 6 else None,
        icmp_type=icmp_type if l4 and proto in (1, 58) else None,
    )


def _address(family: int, hi: int, lo: int) -> str:
    if family == 4:
        return str(ipaddress.IPv4Address(lo & 0xFFFFFFFF))
    return str(ipaddress.IPv6Address((hi << 64) | lo))


def _endpoint(address: str, port: int | None) -> str:
    if port is None:
        return address
    return f"[{address}]:{port}" if ":" in address else f"{address}:{port}"
