"""The IR: the normalized policy that every later stage reads, as immutable values."""

from __future__ import annotations

import enum
import ipaddress
from dataclasses import dataclass
from typing import NamedTuple

from fwc.compiler.policy.findings import Location


class Family(enum.IntEnum):
    IPV4 = 4
    IPV6 = 6

    @property
    def width(self) -> int:
        # The plain value, not `Family.IPV4`: a class attribute lookup per call shows at 1M.
        return 32 if self._value_ == 4 else 128


class AddressRange(NamedTuple):
    """One CIDR: the network address (host bits clear) and its prefix length.

    A named tuple, not a dataclass: a blocklist holds a million of them, and a tuple is
    built and hashed in C (the compiler hashes its rule's addresses several times over).
    """

    family: Family
    network: int
    prefix_len: int

    @property
    def first(self) -> int:
        return self.network

    @property
    def last(self) -> int:
        return self.network | ((1 << (self.family.width - self.prefix_len)) - 1)

    def contains(self, family: Family, address: int) -> bool:
        return family is self.family and self.first <= address <= self.last

    def __str__(self) -> str:
        net: ipaddress.IPv4Network | ipaddress.IPv6Network
        if self.family is Family.IPV4:
            net = ipaddress.IPv4Network((self.network, self.prefix_len))
        else:
            net = ipaddress.IPv6Network((self.network, self.prefix_len))
        return str(net)


@dataclass(frozen=True, order=True)
class PortRange:
    first: int
    last: int

    def contains(self, port: int) -> bool:
        return self.first <= port <= self.last

    def __str__(self) -> str:
        return str(self.first) if self.first == self.last else f"{self.first}-{self.last}"


class Action(enum.Enum):
    ALLOW = "allow"
    DENY = "deny"
    RATE_LIMIT = "rate_limit"


class Protocol(enum.Enum):
    ANY = "any"
    TCP = "tcp"
    UDP = "udp"
    ICMP = "icmp"
    ICMPV6 = "icmpv6"

    @property
    def number(self) -> int | None:
        return _PROTOCOL_NUMBERS[self]


_PROTOCOL_NUMBERS = {
    Protocol.ANY: None,
    Protocol.TCP: 6,
    Protocol.UDP: 17,
    Protocol.ICMP: 1,
    Protocol.ICMPV6: 58,
}

IPPROTO_TCP = 6
IPPROTO_UDP = 17
IPPROTO_ICMP = 1
IPPROTO_ICMPV6 = 58

# TCP flag bits as they sit in byte 13 of the TCP header.
TCP_FLAGS: dict[str, int] = {
    "FIN": 0x01,
    "SYN": 0x02,
    "RST": 0x04,
    "PSH": 0x08,
    "ACK": 0x10,
    "URG": 0x20,
    "ECE": 0x40,
    "CWR": 0x80,
}

# Connection states a rule can match (`state:`), as bits. The values are nftables' ct state
# bits, so a mask reads the same in the program, the manifest and `nft list ruleset`.
CT_STATES: dict[str, int] = {
    "invalid": 0x01,
    "established": 0x02,
    "related": 0x04,
    "new": 0x08,
}


@dataclass(frozen=True)
class Rule:
    """One rule in evaluation order; `id` is its index in `Policy.rules`."""

    id: int
    name: str
    priority: int
    action: Action
    protocol: Protocol
    sources: tuple[AddressRange, ...]  # empty: every address of both families
    destinations: tuple[AddressRange, ...]
    source_ports: tuple[PortRange, ...]  # empty: the rule does not look at ports
    destination_ports: tuple[PortRange, ...]
    tcp_flags_set: int  # bits that must be set (0: none)
    tcp_flags_clear: int  # bits that must be clear (0: none)
    icmp_types: tuple[int, ...]  # empty: the rule does not look at ICMP types
    rate_limit_pps: int | None
    rate_limit_burst: int | None
    log: bool
    description: str
    location: Location
    interfaces: tuple[str, ...] = ()  # globs; the ingress interface must match one (empty: any)
    not_interfaces: tuple[str, ...] = ()  # globs the ingress interface must match none of
    ct_states: int = 0  # CT_STATES bits; the packet's connection state must be one (0: any)
    # the sets `sources` and `destinations` name (their members are expanded into them)
    source_sets: tuple[str, ...] = ()
    destination_sets: tuple[str, ...] = ()

    @property
    def has_interfaces(self) -> bool:
        return bool(self.interfaces or self.not_interfaces)

    @property
    def has_state(self) -> bool:
        return bool(self.ct_states)

    @property
    def has_ports(self) -> bool:
        return bool(self.source_ports or self.destination_ports)

    @property
    def has_tcp_flags(self) -> bool:
        return bool(self.tcp_flags_set or self.tcp_flags_clear)

    @property
    def needs_l4(self) -> bool:
        """A rule that looks into the L4 header never matches a non-first fragment."""
        return self.has_ports or self.has_tcp_flags or bool(self.icmp_types)


@dataclass(frozen=True)
class InterfaceSelection:
    include: tuple[str, ...]  # empty: every non-loopback interface
    exclude: tuple[str, ...]


SetEntries = tuple[AddressRange, ...] | tuple[PortRange, ...]


@dataclass(frozen=True)
class Policy:
    name: str
    default_action: Action  # ALLOW or DENY
    rules: tuple[Rule, ...]  # evaluation order
    interfaces: InterfaceSelection
    sets: tuple[tuple[str, SetEntries], ...]  # kept for reports and Rego; rules hold them expanded
    source_file: str
    source_sha256: str  # of the policy file's bytes
