"""Builds Ethernet frames from packet fields (`proto: tcp, src: ..., dport: 22, vlan: 100`).

The low-level builders take explicit header values, including wrong ones, so the
property tests can build hostile frames with the same code as the valid ones.
"""

from __future__ import annotations

import ipaddress
import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from fwc.compiler.policy.ir import (
    IPPROTO_ICMP,
    IPPROTO_ICMPV6,
    IPPROTO_TCP,
    IPPROTO_UDP,
    TCP_FLAGS,
    Family,
)

ETH_P_IP = 0x0800
ETH_P_IPV6 = 0x86DD
ETH_P_8021Q = 0x8100
ETH_P_8021AD = 0x88A8

IPV6_HOP = 0
IPV6_ROUTING = 43
IPV6_FRAGMENT = 44
IPV6_DEST = 60
EXT_HEADERS: dict[str, int] = {
    "hop": IPV6_HOP,
    "routing": IPV6_ROUTING,
    "dest": IPV6_DEST,
    "fragment": IPV6_FRAGMENT,
}

PROTOCOLS: dict[str, int] = {
    "tcp": IPPROTO_TCP,
    "udp": IPPROTO_UDP,
    "icmp": IPPROTO_ICMP,
    "icmpv6": IPPROTO_ICMPV6,
}

FRAGMENTS = ("none", "first", "non-first")
# A non-first fragment in the builder sits 1480 bytes in: the second fragment of a 1500 MTU.
NON_FIRST_OFFSET = 185

_MAC_DST = bytes.fromhex("020000000002")
_MAC_SRC = bytes.fromhex("020000000001")

DEFAULT_SRC = {Family.IPV4: "192.0.2.1", Family.IPV6: "2001:db8::1"}
DEFAULT_DST = {Family.IPV4: "192.0.2.2", Family.IPV6: "2001:db8::2"}

FIELDS = (
    "proto",
    "src",
    "dst",
    "sport",
    "dport",
    "flags",
    "icmp_type",
    "icmp_code",
    "vlan",
    "fragment",
    "ttl",
    "payload_len",
    "ip_options",
    "ext_headers",
    "inner",
)
INNER_FIELDS = ("proto", "src", "dst", "sport", "dport")


class FrameError(ValueError):
    """Packet fields that describe no frame; the message names the field."""


# ---- low-level builders -------------------------------------------------------------


def ethernet(
    ethertype: int, vlans: Sequence[int] = (), tpids: Sequence[int] | None = None
) -> bytes:
    """An Ethernet header; two tags default to 802.1ad outside 802.1Q, one tag to 802.1Q."""
    if tpids is None:
        tpids = [ETH_P_8021AD] * (len(vlans) - 1) + [ETH_P_8021Q] if vlans else []
    out = _MAC_DST + _MAC_SRC
    for tpid, vid in zip(tpids, vlans, strict=True):
        out += struct.pack("!HH", tpid, vid & 0xFFFF)
    return out + struct.pack("!H", ethertype)


def ipv4(
    src: int,
    dst: int,
    proto: int,
    payload: bytes,
    *,
    ttl: int = 64,
    options: bytes = b"",
    frag_offset: int = 0,
    more_fragments: bool = False,
    ihl: int | None = None,
    version: int = 4,
    total_length: int | None = None,
) -> bytes:
    """An IPv4 header and its payload; `ihl`, `version`, `total_length` override the true values."""
    header_len = 20 + len(options)
    if ihl is None:
        ihl = header_len // 4
    if total_length is None:
        total_length = header_len + len(payload)
    frag = (frag_offset & 0x1FFF) | (0x2000 if more_fragments else 0)
    header = struct.pack(
        "!BBHHHBBH4s4s",
        ((version & 0xF) << 4) | (ihl & 0xF),
        0,
        total_length & 0xFFFF,
        0,
        frag,
        ttl & 0xFF,
        proto & 0xFF,
        0,
        src.to_bytes(4, "big"),
        dst.to_bytes(4, "big"),
    )
    header += options
    checksum = _checksum(header)
    header = header[:10] + struct.pack("!H", checksum) + header[12:]
    return header + payload


def ipv6(
    src: int,
    dst: int,
    next_header: int,
    payload: bytes,
    *,
    hop_limit: int = 64,
    version: int = 6,
    payload_length: int | None = None,
) -> bytes:
    """An IPv6 header and its payload (extension headers are part of `payload`)."""
    if payload_length is None:
        payload_length = len(payload)
    header = struct.pack(
        "!IHBB16s16s",
        (version & 0xF) << 28,
        payload_length & 0xFFFF,
        next_header & 0xFF,
        hop_limit & 0xFF,
        src.to_bytes(16, "big"),
        dst.to_bytes(16, "big"),
    )
    return header + payload


def ext_header(next_header: int, hdr_ext_len: int = 0) -> bytes:
    """A hop-by-hop, routing or destination options header of `(hdr_ext_len + 1) * 8` bytes."""
    # Zero bytes are Pad1 options, so the padding is valid for hop-by-hop and dest opts.
    return bytes([next_header & 0xFF, hdr_ext_len & 0xFF]) + bytes((hdr_ext_len + 1) * 8 - 2)


def fragment_header(next_header: int, offset: int, more: bool) -> bytes:
    return struct.pack("!BBHI", next_header & 0xFF, 0, ((offset & 0x1FFF) << 3) | int(more), 0)


def tcp(sport: int, dport: int, flags: int, *, data_offset: int = 5, payload: bytes = b"") -> bytes:
    options = bytes(max(0, data_offset - 5) * 4)
    header = struct.pack(
        "!HHIIBBHHH",
        sport,
        dport,
        1,
        0,
        (data_offset & 0xF) << 4,
        flags & 0xFF,
        65535,
        0,
        0,
    )
    return header + options + payload


def udp(sport: int, dport: int, payload: bytes = b"") -> bytes:
    return struct.pack("!HHHH", sport, dport, (8 + len(payload)) & 0xFFFF, 0) + payload


def icmp(icmp_type: int, code: int = 0, payload: bytes = b"") -> bytes:
    return struct.pack("!BBHI", icmp_type & 0xFF, code & 0xFF, 0, 0) + payload


def _checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total = sum(int(word) for word in struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def _payload(n: int) -> bytes:
    return bytes((i * 7 + 3) & 0xFF for i in range(n))


# ---- packet fields ------------------------------------------------------------------


@dataclass(frozen=True)
class InnerPacket:
    """The packet an ICMP error quotes: its IP header and its first 8 bytes of TCP or UDP."""

    protocol: int
    src: int
    dst: int
    sport: int
    dport: int


@dataclass(frozen=True)
class PacketFields:
    """One packet described by its header fields; `build_frame` turns it into bytes."""

    family: Family
    protocol: int
    src: int
    dst: int
    sport: int = 12345
    dport: int = 80
    tcp_flags: int = TCP_FLAGS["SYN"]
    icmp_type: int = 8
    icmp_code: int = 0
    vlans: tuple[int, ...] = ()
    fragment: str = "none"  # "none" | "first" | "non-first"
    ttl: int = 64
    payload_len: int = 0
    ip_options: int = 0  # bytes of IPv4 options, a multiple of 4, at most 40
    ext_headers: tuple[str, ...] = ()  # IPv6 extension headers, names from EXT_HEADERS
    inner: InnerPacket | None = None  # an ICMP message's quoted packet, before the payload


def build_frame(fields: PacketFields) -> bytes:
    """The Ethernet frame that `fields` describes."""
    non_first = fields.fragment == "non-first"
    payload = _payload(fields.payload_len)
    l4 = payload if non_first else _l4(fields, payload)
    if fields.family is Family.IPV4:
        ip = ipv4(
            fields.src,
            fields.dst,
            fields.protocol,
            l4,
            ttl=fields.ttl,
            options=b"\x01" * fields.ip_options,
            frag_offset=NON_FIRST_OFFSET if non_first else 0,
            more_fragments=fields.fragment == "first",
        )
        return ethernet(ETH_P_IP, fields.vlans) + ip
    chain = list(fields.ext_headers)
    if fields.fragment != "none" and "fragment" not in chain:
        chain.append("fragment")
    next_header = fields.protocol
    body = l4
    for name in reversed(chain):
        kind = EXT_HEADERS[name]
        if kind == IPV6_FRAGMENT:
            offset = NON_FIRST_OFFSET if non_first else 0
            body = fragment_header(next_header, offset, fields.fragment == "first") + body
        else:
            body = ext_header(next_header) + body
        next_header = kind
    ip = ipv6(fields.src, fields.dst, next_header, body, hop_limit=fields.ttl)
    return ethernet(ETH_P_IPV6, fields.vlans) + ip


def _l4(fields: PacketFields, payload: bytes) -> bytes:
    if fields.protocol == IPPROTO_TCP:
        return tcp(fields.sport, fields.dport, fields.tcp_flags, payload=payload)
    if fields.protocol == IPPROTO_UDP:
        return udp(fields.sport, fields.dport, payload)
    if fields.protocol in (IPPROTO_ICMP, IPPROTO_ICMPV6):
        return icmp(fields.icmp_type, fields.icmp_code, _quoted(fields) + payload)
    return payload


def _quoted(fields: PacketFields) -> bytes:
    """The quoted packet: its IP header and the first 8 bytes of its TCP or UDP header."""
    inner = fields.inner
    if inner is None:
        return b""
    if inner.protocol == IPPROTO_TCP:
        l4 = tcp(inner.sport, inner.dport, TCP_FLAGS["SYN"])[:8]
    else:
        l4 = udp(inner.sport, inner.dport, b"")
    if fields.family is Family.IPV4:
        return ipv4(inner.src, inner.dst, inner.protocol, l4, total_length=40)
    return ipv6(inner.src, inner.dst, inner.protocol, l4, payload_length=20)


def fields_from_mapping(values: Mapping[str, object]) -> PacketFields:
    """Packet fields from a case's `packet:` mapping; raises FrameError naming the bad field."""
    unknown = sorted(str(k) for k in values if k not in FIELDS)
    if unknown:
        raise FrameError(f"unknown packet field `{unknown[0]}` (known: {', '.join(FIELDS)})")
    protocol = _protocol(values.get("proto", "tcp"))
    src = _address(values.get("src"), "src")
    dst = _address(values.get("dst"), "dst")
    family = _family(values, protocol, src, dst)
    if protocol in EXT_HEADERS.values() and family is Family.IPV6:
        raise FrameError(
            f"`proto: {protocol}` is an IPv6 extension header; list it in `ext_headers` instead"
        )
    if src is None:
        src = ipaddress.ip_address(DEFAULT_SRC[family])
    if dst is None:
        dst = ipaddress.ip_address(DEFAULT_DST[family])
    vlans = _vlans(values.get("vlan"))
    fragment = str(values.get("fragment", "none"))
    if fragment not in FRAGMENTS:
        raise FrameError(f"`fragment` must be one of first, non-first, none, not {fragment!r}")
    ip_options = _integer(values, "ip_options", 0, 0, 40)
    if ip_options % 4:
        raise FrameError(f"`ip_options` must be a multiple of 4 bytes, not {ip_options}")
    if ip_options and family is Family.IPV6:
        raise FrameError("`ip_options` applies to IPv4 only; IPv6 uses `ext_headers`")
    ext = _ext_headers(values.get("ext_headers"))
    if ext and family is Family.IPV4:
        raise FrameError("`ext_headers` applies to IPv6 only; IPv4 uses `ip_options`")
    default_type = 128 if protocol == IPPROTO_ICMPV6 else 8
    inner = _inner(values.get("inner"), protocol, family, src, dst)
    return PacketFields(
        family=family,
        protocol=protocol,
        src=int(src),
        dst=int(dst),
        sport=_integer(values, "sport", 12345, 0, 65535),
        dport=_integer(values, "dport", 80, 0, 65535),
        tcp_flags=_flags(values.get("flags", "SYN")),
        icmp_type=_integer(values, "icmp_type", default_type, 0, 255),
        icmp_code=_integer(values, "icmp_code", 0, 0, 255),
        vlans=vlans,
        fragment=fragment,
        ttl=_integer(values, "ttl", 64, 0, 255),
        payload_len=_integer(values, "payload_len", 0, 0, 1500),
        ip_options=ip_options,
        ext_headers=ext,
        inner=inner,
    )


def _inner(
    value: object,
    protocol: int,
    family: Family,
    src: ipaddress.IPv4Address | ipaddress.IPv6Address,
    dst: ipaddress.IPv4Address | ipaddress.IPv6Address,
) -> InnerPacket | None:
    """An ICMP error's quoted packet; its addresses default to the error's, swapped (the
    quoted packet went the other way)."""
    if value is None:
        return None
    if protocol not in (IPPROTO_ICMP, IPPROTO_ICMPV6):
        raise FrameError("`inner` (the packet an ICMP error quotes) needs `proto: icmp|icmpv6`")
    if not isinstance(value, Mapping):
        raise FrameError("`inner` must be a mapping of proto, src, dst, sport, dport")
    unknown = sorted(str(k) for k in value if k not in INNER_FIELDS)
    if unknown:
        known = ", ".join(INNER_FIELDS)
        raise FrameError(f"unknown `inner` field `{unknown[0]}` (known: {known})")
    inner_protocol = _protocol(value.get("proto", "tcp"))
    if inner_protocol not in (IPPROTO_TCP, IPPROTO_UDP):
        raise FrameError(f"`inner.proto` must be tcp or udp, not {value.get('proto')!r}")
    inner_src = _address(value.get("src"), "inner.src") or dst
    inner_dst = _address(value.get("dst"), "inner.dst") or src
    if {inner_src.version, inner_dst.version} != {4 if family is Family.IPV4 else 6}:
        raise FrameError("`inner` addresses must be of the same family as the packet's")
    return InnerPacket(
        protocol=inner_protocol,
        src=int(inner_src),
        dst=int(inner_dst),
        sport=_integer(value, "sport", 12345, 0, 65535),
        dport=_integer(value, "dport", 80, 0, 65535),
    )


def _protocol(value: object) -> int:
    if isinstance(value, bool):
        raise FrameError(f"`proto` must be tcp, udp, icmp, icmpv6 or a number, not {value!r}")
    if isinstance(value, int):
        if 0 <= value <= 255:
            return value
        raise FrameError(f"`proto` number {value} is outside 0..255")
    text = str(value).strip().lower()
    if text in PROTOCOLS:
        return PROTOCOLS[text]
    if text.isdigit() and int(text) <= 255:
        return int(text)
    raise FrameError(f"`proto` must be tcp, udp, icmp, icmpv6 or a number, not {value!r}")


def _address(value: object, name: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    if value is None:
        return None
    try:
        return ipaddress.ip_address(str(value).strip())
    except ValueError:
        raise FrameError(f"`{name}` {value!r} is not an IPv4 or IPv6 address") from None


def _family(
    values: Mapping[str, object],
    protocol: int,
    src: ipaddress.IPv4Address | ipaddress.IPv6Address | None,
    dst: ipaddress.IPv4Address | ipaddress.IPv6Address | None,
) -> Family:
    versions = {a.version for a in (src, dst) if a is not None}
    if len(versions) == 2:
        raise FrameError(f"`src` {src} and `dst` {dst} are of different address families")
    if versions:
        return Family.IPV4 if versions == {4} else Family.IPV6
    if values.get("ext_headers") or protocol == IPPROTO_ICMPV6:
        return Family.IPV6
    return Family.IPV4


def _integer(values: Mapping[str, object], name: str, default: int, lo: int, hi: int) -> int:
    value = values.get(name, default)
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise FrameError(f"`{name}` must be an integer {lo}..{hi}, not {value!r}")
    return value


def _flags(value: object) -> int:
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= 255:
        return value
    if not isinstance(value, str):
        raise FrameError(f"`flags` must be flag names like 'SYN,ACK' or 0..255, not {value!r}")
    bits = 0
    for word in value.replace("|", ",").split(","):
        name = word.strip().upper()
        if not name:
            continue
        if name not in TCP_FLAGS:
            known = " ".join(TCP_FLAGS)
            raise FrameError(f"`flags`: unknown TCP flag {word.strip()!r} (known: {known})")
        bits |= TCP_FLAGS[name]
    return bits


def _vlans(value: object) -> tuple[int, ...]:
    if value is None:
        return ()
    items = value if isinstance(value, list) else [value]
    out: list[int] = []
    for item in items:
        if isinstance(item, bool) or not isinstance(item, int) or not 0 <= item <= 4095:
            raise FrameError(f"`vlan` must be a VLAN id 0..4095 or a list of them, not {item!r}")
        out.append(item)
    return tuple(out)


def _ext_headers(value: object) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list):
        raise FrameError("`ext_headers` must be a list such as [hop, routing, dest, fragment]")
    out: list[str] = []
    for item in value:
        if str(item) not in EXT_HEADERS:
            known = ", ".join(EXT_HEADERS)
            raise FrameError(f"`ext_headers`: unknown header {item!r} (known: {known})")
        out.append(str(item))
    return tuple(out)
