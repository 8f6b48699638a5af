"""The header space of IP packets, and the cubes a rule's match covers in it.

Protocols fall into five classes that rules can tell apart: tcp, udp, icmp, icmpv6 and
every other number. A field a packet does not carry (ports outside TCP and UDP, flags
outside TCP, all of L4 in a non-first fragment) holds the single value "absent", so a
rule that looks at it fails exactly as the evaluator's does.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

from fwc.compiler.analysis.space import ANY_INTERFACE, Cube, Intervals, Region
from fwc.compiler.oracle.packet import Packet
from fwc.compiler.policy.interfaces import NO_INTERFACES, InterfaceClasses
from fwc.compiler.policy.ir import AddressRange, Family, PortRange, Protocol, Rule

PROTOCOL_CLASSES = ("tcp", "udp", "icmp", "icmpv6", "other")
TCP, UDP, ICMP, ICMPV6, OTHER = (1 << i for i in range(5))
ALL_PROTOCOLS = TCP | UDP | ICMP | ICMPV6 | OTHER
# An example number per class; 47 (GRE) stands for "other": every such number behaves alike.
PROTOCOL_NUMBERS = {TCP: 6, UDP: 17, ICMP: 1, ICMPV6: 58, OTHER: 47}

V4, V6 = 1, 2
FAMILY_BITS = {Family.IPV4: V4, Family.IPV6: V6}
WHOLE, NON_FIRST = 1, 2  # fragment bits: unfragmented or first fragment; non-first fragment

NO_PORT = 65536
ANY_PORT: Intervals = ((0, 65535),)
PORT_FIELD: Intervals = ((0, NO_PORT),)
ABSENT_PORT: Intervals = ((NO_PORT, NO_PORT),)
ABSENT = 1 << 256  # the "absent" bit of the tcp_flags and icmp_type fields
BYTE_VALUES = ABSENT - 1
BYTE_FIELD = ABSENT | BYTE_VALUES

_PROTOCOL_BITS = {
    Protocol.ANY: ALL_PROTOCOLS,
    Protocol.TCP: TCP,
    Protocol.UDP: UDP,
    Protocol.ICMP: ICMP,
    Protocol.ICMPV6: ICMPV6,
}


def _family_kinds(family: Family) -> list[Cube]:
    """The disjoint cubes whose union is every IP packet of one family."""
    bit = FAMILY_BITS[family]
    addresses: Intervals = ((0, (1 << family.width) - 1),)

    def kind(fragment: int, protocol: int, ports: Intervals, flags: int, icmp_type: int) -> Cube:
        return Cube(bit, addresses, addresses, fragment, protocol, ports, ports, flags, icmp_type)

    return [
        kind(WHOLE, TCP, ANY_PORT, BYTE_VALUES, ABSENT),
        kind(WHOLE, UDP, ANY_PORT, ABSENT, ABSENT),
        kind(WHOLE, ICMP | ICMPV6, ABSENT_PORT, ABSENT, BYTE_VALUES),
        kind(WHOLE, OTHER, ABSENT_PORT, ABSENT, ABSENT),
        kind(NON_FIRST, ALL_PROTOCOLS, ABSENT_PORT, ABSENT, ABSENT),
    ]


KINDS = {family: _family_kinds(family) for family in Family}
UNIVERSE: Region = KINDS[Family.IPV4] + KINDS[Family.IPV6]


@dataclass(frozen=True)
class Selection:
    """A set of packets written as a rule's match: empty tuples and zero masks select all."""

    protocol: Protocol = Protocol.ANY
    sources: tuple[AddressRange, ...] = ()
    destinations: tuple[AddressRange, ...] = ()
    source_ports: tuple[PortRange, ...] = ()
    destination_ports: tuple[PortRange, ...] = ()
    tcp_flags_set: int = 0
    tcp_flags_clear: int = 0
    icmp_types: tuple[int, ...] = ()
    fragment: int = WHOLE | NON_FIRST

    @property
    def needs_l4(self) -> bool:
        return bool(
            self.source_ports
            or self.destination_ports
            or self.tcp_flags_set
            or self.tcp_flags_clear
            or self.icmp_types
        )


def selection_of(rule: Rule) -> Selection:
    return Selection(
        rule.protocol,
        rule.sources,
        rule.destinations,
        rule.source_ports,
        rule.destination_ports,
        rule.tcp_flags_set,
        rule.tcp_flags_clear,
        rule.icmp_types,
    )


def _addresses(ranges: tuple[AddressRange, ...]) -> dict[Family, Intervals]:
    """The merged spans of each family, in one pass: a blocklist holds a million CIDRs.
    Each CIDR is sorted as one integer, network << 8 | host bits."""
    keys: dict[Family, list[int]] = {Family.IPV4: [], Family.IPV6: []}
    for r in ranges:
        keys[r.family].append(r.network << 8 | (r.family.width - r.prefix_len))
    out: dict[Family, Intervals] = {}
    for family, packed in keys.items():
        packed.sort()
        merged: list[tuple[int, int]] = []
        end = -2
        for key in packed:
            lo = key >> 8
            hi = lo | ((1 << (key & 255)) - 1)
            if lo <= end + 1:
                if hi > end:
                    merged[-1] = (merged[-1][0], hi)
                    end = hi
            else:
                merged.append((lo, hi))
                end = hi
        out[family] = tuple(merged)
    return out


def _ports(ranges: tuple[PortRange, ...]) -> Intervals:
    return _spans([(r.first, r.last) for r in ranges]) if ranges else PORT_FIELD


def _spans(spans: list[tuple[int, int]]) -> Intervals:
    out: list[tuple[int, int]] = []
    for lo, hi in sorted(spans):
        if out and lo <= out[-1][1] + 1:
            out[-1] = (out[-1][0], max(out[-1][1], hi))
        else:
            out.append((lo, hi))
    return tuple(out)


@functools.cache
def flag_values(must_set: int, must_clear: int) -> int:
    """The bitmask of flag bytes with every `must_set` bit set and every `must_clear` bit clear."""
    if not (must_set or must_clear):
        return BYTE_FIELD
    mask = 0
    for value in range(256):
        if value & must_set == must_set and not value & must_clear:
            mask |= 1 << value
    return mask


def _icmp_types(types: tuple[int, ...]) -> int:
    if not types:
        return BYTE_FIELD
    mask = 0
    for value in types:
        mask |= 1 << value
    return mask


def _kind_ports(kind: Intervals, ports: Intervals) -> Intervals:
    """`ports` (PORT_FIELD or real ports) within a kind's ports (ANY_PORT or ABSENT_PORT)."""
    if ports == PORT_FIELD:
        return kind
    return () if kind == ABSENT_PORT else ports


def cubes(selection: Selection) -> Region:
    """The disjoint cubes of every packet `selection` matches: its fields met with each kind
    of packet (the kinds' addresses are whole, so only the other fields need meeting)."""
    fragment = selection.fragment & (WHOLE if selection.needs_l4 else WHOLE | NON_FIRST)
    sport = _ports(selection.source_ports)
    dport = _ports(selection.destination_ports)
    flags = flag_values(selection.tcp_flags_set, selection.tcp_flags_clear)
    icmp_type = _icmp_types(selection.icmp_types)
    protocol = _PROTOCOL_BITS[selection.protocol]
    out: Region = []
    sources = _addresses(selection.sources) if selection.sources else None
    destinations = _addresses(selection.destinations) if selection.destinations else None
    for family in (Family.IPV4, Family.IPV6):
        whole: Intervals = ((0, (1 << family.width) - 1),)
        src = sources[family] if sources is not None else whole
        dst = destinations[family] if destinations is not None else whole
        if not (src and dst):
            continue
        for kind in KINDS[family]:
            piece = Cube(
                kind.family,
                src,
                dst,
                kind.fragment & fragment,
                kind.protocol & protocol,
                _kind_ports(kind.sport, sport),
                _kind_ports(kind.dport, dport),
                kind.tcp_flags & flags,
                kind.icmp_type & icmp_type,
            )
            if all(piece):
                out.append(piece)
    return out


def interface_field(classes: InterfaceClasses, rule: Rule | None = None) -> int:
    """The interface classes of the packets a rule (None: any rule) may see: those of the
    interfaces the policy attaches to that pass its interface match; every class when no
    rule names interfaces."""
    if not classes.used:
        return ANY_INTERFACE
    if rule is None or not rule.has_interfaces:
        return classes.attached
    return classes.rule_mask(rule) & classes.attached


def universe(classes: InterfaceClasses = NO_INTERFACES) -> Region:
    """Every IP packet on an interface the policy attaches to."""
    field = interface_field(classes)
    return [c._replace(interface=field) for c in UNIVERSE]


def rule_cubes(rule: Rule, classes: InterfaceClasses = NO_INTERFACES) -> Region:
    field = interface_field(classes, rule)
    if not field:
        return []
    out = cubes(selection_of(rule))
    return out if field == ANY_INTERFACE else [c._replace(interface=field) for c in out]


_CLASS_OF_NUMBER = {6: TCP, 17: UDP, 1: ICMP, 58: ICMPV6}


def packet_point(packet: Packet, classes: InterfaceClasses = NO_INTERFACES) -> Cube:
    """A parsed IP packet (klass "ip") as the cube of its single point."""
    assert packet.family is not None and packet.src is not None and packet.dst is not None
    assert packet.protocol is not None

    def one(value: int | None) -> Intervals:
        return ((NO_PORT, NO_PORT),) if value is None else ((value, value),)

    return Cube(
        FAMILY_BITS[packet.family],
        ((packet.src, packet.src),),
        ((packet.dst, packet.dst),),
        NON_FIRST if packet.non_first_fragment else WHOLE,
        _CLASS_OF_NUMBER.get(packet.protocol, OTHER),
        one(packet.sport),
        one(packet.dport),
        ABSENT if packet.tcp_flags is None else 1 << packet.tcp_flags,
        ABSENT if packet.icmp_type is None else 1 << packet.icmp_type,
        1 << classes.class_of(packet.interface) if classes.used else ANY_INTERFACE,
    )
