"""Parses a frame into the fields rules look at, exactly as docs/semantics.md describes."""

from __future__ import annotations

from dataclasses import dataclass, replace

from fwc.compiler.policy.ir import IPPROTO_ICMP, IPPROTO_ICMPV6, IPPROTO_TCP, IPPROTO_UDP, Family

ETH_HLEN = 14
VLAN_TPIDS = (0x8100, 0x88A8)
MAX_VLAN_TAGS = 2
ETH_P_IP = 0x0800
ETH_P_IPV6 = 0x86DD
MAX_EXT_HEADERS = 8
_EXT_LENGTHED = (0, 43, 60)  # hop-by-hop, routing, destination options
_EXT_FRAGMENT = 44
# ICMP errors, the only ICMP messages with a connection state: they quote the packet they
# answer, whose own connection they are related to (docs/semantics.md#connection-state).
ICMP_ERROR_TYPES = (3, 4, 5, 11, 12)  # unreachable, source quench, redirect, time exceeded,
# parameter problem
ICMPV6_ERROR_TYPES = (1, 2, 3, 4)  # unreachable, packet too big, time exceeded, parameter problem


@dataclass(frozen=True)
class Packet:
    """What the parser found. `klass` is "ip", "malformed" or "non_ip"; `reason` says why."""

    klass: str
    reason: str = ""
    length: int = 0
    vlans: tuple[int, ...] = ()
    ethertype: int | None = None
    family: Family | None = None
    src: int | None = None
    dst: int | None = None
    protocol: int | None = None
    fragment: str = "none"  # "none" | "first" | "non-first"
    sport: int | None = None
    dport: int | None = None
    tcp_flags: int | None = None
    icmp_type: int | None = None
    interface: str | None = None  # the ingress interface's name; None: not known
    # An ICMP error's embedded packet, when it is one fwc can look up (see `tracked`):
    inner_protocol: int | None = None  # TCP or UDP
    inner_src: int | None = None
    inner_dst: int | None = None
    inner_sport: int | None = None
    inner_dport: int | None = None
    # The connection state rules see: the evaluator's input for a tracked packet, None for an
    # untracked one (and before evaluation)
    ct_state: str | None = None

    @property
    def non_first_fragment(self) -> bool:
        return self.fragment == "non-first"

    @property
    def tracked(self) -> bool:
        """Whether the packet has a connection state: a TCP or UDP packet whose ports were
        parsed, or an ICMP error quoting a TCP or UDP packet of its family."""
        if self.klass != "ip" or self.non_first_fragment:
            return False
        if self.protocol in (IPPROTO_TCP, IPPROTO_UDP):
            return self.sport is not None
        return self.inner_protocol is not None


def parse(frame: bytes) -> Packet:
    """The parsed packet; never raises, whatever the bytes."""
    n = len(frame)
    if n < ETH_HLEN:
        return Packet("malformed", f"frame of {n} bytes is shorter than an Ethernet header", n)
    ethertype = _u16(frame, 12)
    offset = ETH_HLEN
    vlans: list[int] = []
    while ethertype in VLAN_TPIDS and len(vlans) < MAX_VLAN_TAGS:
        if n < offset + 4:
            return Packet("malformed", "frame ends inside a VLAN tag", n, tuple(vlans))
        vlans.append(_u16(frame, offset) & 0x0FFF)
        ethertype = _u16(frame, offset + 2)
        offset += 4
    tags = tuple(vlans)
    if ethertype == ETH_P_IP:
        return _ipv4(frame, offset, tags)
    if ethertype == ETH_P_IPV6:
        return _ipv6(frame, offset, tags)
    return Packet("non_ip", f"EtherType 0x{ethertype:04x} is not IPv4 or IPv6", n, tags, ethertype)


def _ipv4(frame: bytes, l3: int, vlans: tuple[int, ...]) -> Packet:
    n = len(frame)
    avail = n - l3

    def bad(reason: str) -> Packet:
        return Packet("malformed", reason, n, vlans, ETH_P_IP, Family.IPV4)

    if avail < 20:
        return bad(f"IPv4 header cut short: {avail} bytes after L2")
    version = frame[l3] >> 4
    ihl = frame[l3] & 0x0F
    if version != 4:
        return bad(f"IPv4 version field is {version}")
    if ihl < 5:
        return bad(f"IPv4 IHL {ihl} is below 5")
    if avail < ihl * 4:
        return bad(f"IPv4 header of {ihl * 4} bytes cut short: {avail} bytes after L2")
    total = _u16(frame, l3 + 2)
    if total < ihl * 4:
        return bad(f"IPv4 total length {total} is shorter than its header ({ihl * 4})")
    if total > avail:
        return bad(f"IPv4 total length {total} exceeds the {avail} bytes after L2")
    frag = _u16(frame, l3 + 6)
    offset = frag & 0x1FFF
    more = bool(frag & 0x2000)
    fragment = "non-first" if offset else ("first" if more else "none")
    protocol = frame[l3 + 9]
    src = int.from_bytes(frame[l3 + 12 : l3 + 16], "big")
    dst = int.from_bytes(frame[l3 + 16 : l3 + 20], "big")
    base = Packet("ip", "", n, vlans, ETH_P_IP, Family.IPV4, src, dst, protocol, fragment)
    return _l4(frame, base, l3 + ihl * 4, l3 + total)


def _ipv6(frame: bytes, l3: int, vlans: tuple[int, ...]) -> Packet:
    n = len(frame)
    avail = n - l3

    def bad(reason: str) -> Packet:
        return Packet("malformed", reason, n, vlans, ETH_P_IPV6, Family.IPV6)

    if avail < 40:
        return bad(f"IPv6 header cut short: {avail} bytes after L2")
    version = frame[l3] >> 4
    if version != 6:
        return bad(f"IPv6 version field is {version}")
    payload_length = _u16(frame, l3 + 4)
    if 40 + payload_length > avail:
        return bad(f"IPv6 payload length {payload_length} exceeds the {avail - 40} bytes there")
    end = l3 + 40 + payload_length
    src = int.from_bytes(frame[l3 + 8 : l3 + 24], "big")
    dst = int.from_bytes(frame[l3 + 24 : l3 + 40], "big")
    next_header = frame[l3 + 6]
    offset = l3 + 40
    walked = 0
    fragment = "none"
    while next_header in _EXT_LENGTHED or next_header == _EXT_FRAGMENT:
        if walked == MAX_EXT_HEADERS:
            return bad(f"more than {MAX_EXT_HEADERS} IPv6 extension headers")
        walked += 1
        if next_header == _EXT_FRAGMENT:
            if offset + 8 > end:
                return bad("IPv6 fragment header does not fit in the packet")
            field = _u16(frame, offset + 2)
            next_header = frame[offset]
            offset += 8
            if field >> 3:
                fragment = "non-first"
                break
            fragment = "first" if field & 1 else fragment
            continue
        if offset + 2 > end:
            return bad(f"IPv6 extension header {next_header} does not fit in the packet")
        size = (frame[offset + 1] + 1) * 8
        if offset + size > end:
            return bad(f"IPv6 extension header {next_header} of {size} bytes does not fit")
        next_header = frame[offset]
        offset += size
    base = Packet("ip", "", n, vlans, ETH_P_IPV6, Family.IPV6, src, dst, next_header, fragment)
    return _l4(frame, base, offset, end)


def _l4(frame: bytes, base: Packet, start: int, end: int) -> Packet:
    """Adds the L4 fields; a header that does not fit in [start, end) makes it malformed."""
    if base.non_first_fragment:
        return base
    have = end - start
    if base.protocol == IPPROTO_TCP:
        if have < 20:
            return replace(base, klass="malformed", reason=f"TCP header cut short: {have} bytes")
        data_offset = frame[start + 12] >> 4
        if data_offset < 5:
            return replace(base, klass="malformed", reason=f"TCP data offset {data_offset} < 5")
        return replace(
            base,
            sport=_u16(frame, start),
            dport=_u16(frame, start + 2),
            tcp_flags=frame[start + 13],
        )
    if base.protocol == IPPROTO_UDP:
        if have < 8:
            return replace(base, klass="malformed", reason=f"UDP header cut short: {have} bytes")
        return replace(base, sport=_u16(frame, start), dport=_u16(frame, start + 2))
    if base.protocol in (IPPROTO_ICMP, IPPROTO_ICMPV6):
        if have < 8:
            return replace(base, klass="malformed", reason=f"ICMP header cut short: {have} bytes")
        return _embedded(frame, replace(base, icmp_type=frame[start]), start + 8)
    return base


def _embedded(frame: bytes, packet: Packet, start: int) -> Packet:
    """Adds the embedded packet's tuple to an ICMP error that quotes a TCP or UDP packet of
    its own family with its two ports inside the frame; any other ICMP message is unchanged."""
    n = len(frame)
    if packet.family is Family.IPV4:
        if packet.protocol != IPPROTO_ICMP or packet.icmp_type not in ICMP_ERROR_TYPES:
            return packet
        if start + 20 > n or frame[start] >> 4 != 4 or frame[start] & 0x0F < 5:
            return packet
        protocol = frame[start + 9]
        if _u16(frame, start + 6) & 0x1FFF:  # a non-first fragment quoted: no ports
            return packet
        l4 = start + (frame[start] & 0x0F) * 4
        src = int.from_bytes(frame[start + 12 : start + 16], "big")
        dst = int.from_bytes(frame[start + 16 : start + 20], "big")
    else:
        if packet.protocol != IPPROTO_ICMPV6 or packet.icmp_type not in ICMPV6_ERROR_TYPES:
            return packet
        if start + 40 > n or frame[start] >> 4 != 6:
            return packet
        protocol = frame[start + 6]
        l4 = start + 40
        src = int.from_bytes(frame[start + 8 : start + 24], "big")
        dst = int.from_bytes(frame[start + 24 : start + 40], "big")
    if protocol not in (IPPROTO_TCP, IPPROTO_UDP) or l4 + 4 > n:
        return packet
    return replace(
        packet,
        inner_protocol=protocol,
        inner_src=src,
        inner_dst=dst,
        inner_sport=_u16(frame, l4),
        inner_dport=_u16(frame, l4 + 2),
    )


def _u16(frame: bytes, offset: int) -> int:
    return (frame[offset] << 8) | frame[offset + 1]
