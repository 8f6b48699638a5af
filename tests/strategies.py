"""Hypothesis strategies shared by the tests: random valid policies and valid or hostile frames.

`policies()` draws a Policy through the real front end (YAML text, `load_bytes`,
`normalize`). `frames()` draws any frame, hostile ones included; `frames_for(policy)`
biases addresses, ports, flags and ICMP types toward the policy's rules so that
packets often hit them. `policy_and_frames()` draws both at once.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from typing import Any

import yaml
from hypothesis import strategies as st

from fwc.compiler.oracle import frames as fr
from fwc.compiler.policy.findings import has_errors
from fwc.compiler.policy.ir import (
    IPPROTO_ICMP,
    IPPROTO_ICMPV6,
    IPPROTO_TCP,
    IPPROTO_UDP,
    TCP_FLAGS,
    AddressRange,
    Family,
    Policy,
    PortRange,
)
from fwc.compiler.policy.normalize import normalize
from fwc.compiler.policy.source import load_bytes

PROTOCOL_NAMES = ("tcp", "udp", "icmp", "icmpv6", "any")
ACTIONS = ("allow", "deny")

# A few fixed networks that rules and packets share, so random draws overlap.
_V4_BASES = (0x0A000000, 0xC0000200, 0xC6336400, 0xCB007100)  # 10/8, 192.0.2/24, ...
_V6_BASES = (0x20010DB8 << 96, 0xFD000020 << 96, 0xFE800000 << 96)
_INTERESTING_PORTS = (0, 1, 22, 53, 80, 443, 1023, 1024, 8080, 65534, 65535)
_ICMP_TYPES = (0, 3, 8, 11, 1, 2, 4, 128, 129, 133, 134, 135, 136, 255)


# ---- policies -----------------------------------------------------------------------


# Plain helpers taking `draw` keep strategy objects from being rebuilt on every draw,
# which dominates the cost of drawing a 30-rule policy.


def draw_address(draw: st.DrawFn, family: Family) -> int:
    width = family.width
    bases = _V4_BASES if family is Family.IPV4 else _V6_BASES
    base = draw(st.sampled_from(bases))
    choice = draw(st.integers(0, 3))
    if choice == 0:
        return draw(st.integers(0, (1 << width) - 1))
    low_bits = draw(st.integers(0, 16 if choice == 1 else width // 2))
    return base | draw(st.integers(0, (1 << low_bits) - 1))


def draw_cidr(draw: st.DrawFn, family: Family | None = None) -> str:
    """A CIDR or bare address of any prefix length; host bits sometimes set (a warning only)."""
    if family is None:
        family = Family.IPV4 if draw(st.booleans()) else Family.IPV6
    width = family.width
    address = draw_address(draw, family)
    prefix = draw(st.integers(0, width))
    if draw(st.integers(0, 2)) == 0:
        prefix = draw(
            st.sampled_from((width, width, 0, 8, 16, 24, 48, 64)[: 6 if width == 32 else 8])
        )
    if draw(st.integers(0, 9)) > 0:
        address &= ~((1 << (width - prefix)) - 1) & ((1 << width) - 1)
    if family is Family.IPV4:
        text = str(ipaddress.IPv4Address(address))
    else:
        text = str(ipaddress.IPv6Address(address))
    if prefix == width and draw(st.booleans()):
        return text
    return f"{text}/{prefix}"


def draw_port_entry(draw: st.DrawFn) -> int | str:
    if draw(st.booleans()):
        lo = draw(st.sampled_from(_INTERESTING_PORTS))
    else:
        lo = draw(st.integers(0, 65535))
    if draw(st.booleans()):
        return lo
    span = draw(st.sampled_from((0, 1, 10, 1000, 65535)))
    return f"{lo}-{draw(st.integers(lo, min(65535, lo + span)))}"


def draw_tcp_flags(draw: st.DrawFn) -> str:
    names = sorted(TCP_FLAGS)
    count = draw(st.integers(1, 4))
    chosen = [draw(st.sampled_from(names)) for _ in range(count)]
    return ",".join(("!" if draw(st.booleans()) else "") + n for n in dict.fromkeys(chosen))


@st.composite
def address_ints(draw: st.DrawFn, family: Family) -> int:
    return draw_address(draw, family)


@st.composite
def cidr_texts(draw: st.DrawFn, family: Family | None = None) -> str:
    return draw_cidr(draw, family)


@st.composite
def port_entries(draw: st.DrawFn) -> int | str:
    return draw_port_entry(draw)


@st.composite
def tcp_flag_texts(draw: st.DrawFn) -> str:
    return draw_tcp_flags(draw)


def _draw_list(draw: st.DrawFn, item: Any, lo: int, hi: int) -> list[Any]:
    return [item(draw) for _ in range(draw(st.integers(lo, hi)))]


# Bursts far above the frames a test sends through one program, so that every bucket
# still holds a token and the evaluator's "full bucket" (no bucket state) is exact.
LARGE_BURSTS = (1_000_000, 2**32 - 1)


@st.composite
def policy_documents(
    draw: st.DrawFn, min_rules: int = 1, max_rules: int = 30, rate_limit: bool = False
) -> dict[str, Any]:
    """A valid policy as plain YAML values, with sets, ties and ranges: allow/deny rules, and
    with `rate_limit` also rate_limit rules of a LARGE_BURSTS burst and `log: true` rules."""
    address_sets = {
        f"nets{i}": _draw_list(draw, draw_cidr, 1, 4) for i in range(draw(st.integers(0, 3)))
    }
    port_sets = {
        f"ports{i}": _draw_list(draw, draw_port_entry, 1, 4) for i in range(draw(st.integers(0, 2)))
    }

    def addresses() -> list[str]:
        if draw(st.integers(0, 2)) == 0:
            return []
        entries: list[str] = _draw_list(draw, draw_cidr, 1, 3)
        if draw(st.booleans()) and address_sets:
            entries.append("$" + draw(st.sampled_from(sorted(address_sets))))
        return entries

    def ports() -> list[int | str]:
        entries: list[int | str] = _draw_list(draw, draw_port_entry, 1, 3)
        if draw(st.booleans()) and port_sets:
            entries.append("$" + draw(st.sampled_from(sorted(port_sets))))
        return entries

    rules = [
        _draw_rule(draw, i, rate_limit, addresses, ports)
        for i in range(draw(st.integers(min_rules, max_rules)))
    ]
    doc: dict[str, Any] = {
        "version": 1,
        "name": "hyp",
        "default_action": draw(st.sampled_from(ACTIONS)),
        "rules": rules,
    }
    if address_sets or port_sets:
        doc["sets"] = {**address_sets, **port_sets}
    return doc


def _draw_rule(
    draw: st.DrawFn,
    i: int,
    rate_limit: bool,
    addresses: Callable[[], list[str]],
    ports: Callable[[], list[int | str]],
) -> dict[str, Any]:
    """Rule `i` of policy_documents: protocol, action, addresses, ports, flags, types."""
    protocol = draw(st.sampled_from(PROTOCOL_NAMES))
    priority = draw(st.integers(0, 20)) if draw(st.booleans()) else draw(st.integers(0, 65535))
    rule: dict[str, Any] = {
        "name": f"r{i}",
        "priority": priority,
        "action": draw(st.sampled_from(ACTIONS)),
        "protocol": protocol,
    }
    if rate_limit and draw(st.integers(0, 3)) == 0:
        rule["action"] = "rate_limit"
        rule["rate_limit_pps"] = draw(st.sampled_from((1, 7, 1000, 10**9)))
        rule["rate_limit_burst"] = draw(st.sampled_from(LARGE_BURSTS))
    if rate_limit and draw(st.integers(0, 3)) == 0:
        rule["log"] = True
    for key in ("source_cidrs", "destination_cidrs"):
        entries = addresses()
        if entries:
            rule[key] = entries
    wants_icmp = protocol in ("icmp", "icmpv6") or (protocol == "any" and draw(st.booleans()))
    if protocol in ("tcp", "udp", "any") and not (protocol == "any" and wants_icmp):
        for key in ("source_ports", "destination_ports"):
            if draw(st.integers(0, 2)) == 0:
                rule[key] = ports()
    if protocol == "tcp" and draw(st.integers(0, 2)) == 0:
        rule["tcp_flags"] = draw_tcp_flags(draw)
    if wants_icmp and draw(st.booleans()):
        types = _draw_list(draw, lambda d: d(st.sampled_from(_ICMP_TYPES)), 1, 4)
        rule["icmp_types"] = list(dict.fromkeys(types))
    return rule


def policy_from_document(doc: dict[str, Any]) -> Policy:
    """The IR of a drawn document, through the real loader; a failure is a strategy bug."""
    text = yaml.safe_dump(doc, sort_keys=False)
    loaded, findings = load_bytes(text.encode(), "hyp.yaml")
    assert loaded is not None, findings
    policy, more = normalize(loaded)
    assert policy is not None and not has_errors(more), (text, more)
    return policy


def policy_texts(min_rules: int = 1, max_rules: int = 30) -> st.SearchStrategy[str]:
    return policy_documents(min_rules, max_rules).map(
        lambda doc: yaml.safe_dump(doc, sort_keys=False)
    )


def policies(
    min_rules: int = 1, max_rules: int = 30, rate_limit: bool = False
) -> st.SearchStrategy[Policy]:
    return policy_documents(min_rules, max_rules, rate_limit).map(policy_from_document)


# ---- valid packets ------------------------------------------------------------------


@st.composite
def _address_in(draw: st.DrawFn, ranges: tuple[AddressRange, ...], family: Family) -> int:
    """An address inside one of `ranges` of `family` (often at an edge), else a near miss."""
    mine = [r for r in ranges if r.family is family]
    if not mine or draw(st.integers(0, 5)) == 0:
        return draw_address(draw, family)
    r = draw(st.sampled_from(mine))
    edge = draw(st.integers(0, 4))
    top = (1 << family.width) - 1
    if edge == 0:
        return r.first
    if edge == 1:
        return r.last
    if edge == 2:
        return max(0, r.first - 1)
    if edge == 3:
        return min(top, r.last + 1)
    return draw(st.integers(r.first, r.last))


@st.composite
def _port_in(draw: st.DrawFn, ranges: tuple[PortRange, ...]) -> int:
    if not ranges or draw(st.integers(0, 5)) == 0:
        return draw(st.one_of(st.sampled_from(_INTERESTING_PORTS), st.integers(0, 65535)))
    r = draw(st.sampled_from(ranges))
    return draw(
        st.sampled_from(
            [r.first, r.last, max(0, r.first - 1), min(65535, r.last + 1), (r.first + r.last) // 2]
        )
    )


@st.composite
def packet_fields(draw: st.DrawFn, policy: Policy | None = None) -> fr.PacketFields:
    """A valid packet; with a policy, its fields are drawn near one of the policy's rules."""
    rule = draw(st.sampled_from(policy.rules)) if policy and policy.rules else None
    if rule is not None and (rule.sources or rule.destinations) and draw(st.integers(0, 3)):
        families = {r.family for r in (*rule.sources, *rule.destinations)}
        family = draw(st.sampled_from(sorted(families)))
    else:
        family = draw(st.sampled_from((Family.IPV4, Family.IPV6)))
    number = rule.protocol.number if rule is not None else None
    if number is not None and draw(st.integers(0, 4)):
        protocol = number
    else:
        protocol = draw(
            st.one_of(
                st.sampled_from((IPPROTO_TCP, IPPROTO_UDP, IPPROTO_ICMP, IPPROTO_ICMPV6)),
                st.integers(0, 255),
            )
        )
    if family is Family.IPV6 and protocol in fr.EXT_HEADERS.values():
        protocol = IPPROTO_TCP
    sources = rule.sources if rule else ()
    destinations = rule.destinations if rule else ()
    flags = draw(st.integers(0, 255))
    if rule is not None and rule.has_tcp_flags and draw(st.integers(0, 3)):
        flags = (flags | rule.tcp_flags_set) & ~rule.tcp_flags_clear
    icmp_types = rule.icmp_types if rule else ()
    icmp_type = draw(st.integers(0, 255))
    if draw(st.integers(0, 3)) and icmp_types:
        icmp_type = draw(st.sampled_from(icmp_types))
    vlan_count = draw(st.sampled_from((0, 0, 0, 1, 2)))
    chain: tuple[str, ...] = ()
    if family is Family.IPV6:
        chain = tuple(
            draw(st.lists(st.sampled_from(sorted(fr.EXT_HEADERS)), max_size=3))
            if draw(st.integers(0, 3)) == 0
            else []
        )
        chain = tuple(h for h in chain if h != "fragment") + (
            ("fragment",) if "fragment" in chain else ()
        )
    return fr.PacketFields(
        family=family,
        protocol=protocol,
        src=draw(_address_in(sources, family)),
        dst=draw(_address_in(destinations, family)),
        sport=draw(_port_in(rule.source_ports if rule else ())),
        dport=draw(_port_in(rule.destination_ports if rule else ())),
        tcp_flags=flags,
        icmp_type=icmp_type,
        icmp_code=draw(st.integers(0, 255)),
        vlans=tuple(draw(st.lists(st.integers(0, 4095), min_size=vlan_count, max_size=vlan_count))),
        fragment=draw(st.sampled_from(("none", "none", "none", "first", "non-first"))),
        ttl=draw(st.integers(0, 255)),
        payload_len=draw(st.sampled_from((0, 0, 1, 7, 64))),
        ip_options=4 * draw(st.sampled_from((0, 0, 0, 1, 10))) if family is Family.IPV4 else 0,
        ext_headers=chain,
    )


def valid_frames(policy: Policy | None = None) -> st.SearchStrategy[bytes]:
    return packet_fields(policy).map(fr.build_frame)


# ---- hostile frames -----------------------------------------------------------------


@st.composite
def _l4_bytes(draw: st.DrawFn, protocol: int) -> bytes:
    payload = bytes(draw(st.sampled_from((0, 0, 3, 20))))
    if protocol == IPPROTO_TCP:
        return fr.tcp(
            draw(st.integers(0, 65535)),
            draw(st.integers(0, 65535)),
            draw(st.integers(0, 255)),
            data_offset=draw(st.one_of(st.just(5), st.integers(0, 15))),
            payload=payload,
        )
    if protocol == IPPROTO_UDP:
        return fr.udp(draw(st.integers(0, 65535)), draw(st.integers(0, 65535)), payload)
    if protocol in (IPPROTO_ICMP, IPPROTO_ICMPV6):
        return fr.icmp(draw(st.integers(0, 255)), draw(st.integers(0, 255)), payload)
    return payload


def _protocols() -> st.SearchStrategy[int]:
    return st.one_of(
        st.sampled_from((IPPROTO_TCP, IPPROTO_UDP, IPPROTO_ICMP, IPPROTO_ICMPV6)),
        st.integers(0, 255),
    )


@st.composite
def _hostile_ipv4(draw: st.DrawFn) -> bytes:
    protocol = draw(_protocols())
    options = bytes(4 * draw(st.integers(0, 10)))
    payload = draw(_l4_bytes(protocol))
    true_ihl = 5 + len(options) // 4
    return fr.ipv4(
        draw_address(draw, Family.IPV4),
        draw_address(draw, Family.IPV4),
        protocol,
        payload,
        options=options,
        frag_offset=draw(st.one_of(st.just(0), st.integers(0, 0x1FFF))),
        more_fragments=draw(st.booleans()),
        ihl=draw(st.one_of(st.just(true_ihl), st.integers(0, 15))),
        version=draw(st.one_of(st.just(4), st.integers(0, 15))),
        total_length=draw(
            st.one_of(st.none(), st.integers(0, 65535), st.integers(0, 20 + len(payload) + 44))
        ),
    )


@st.composite
def _hostile_ipv6(draw: st.DrawFn) -> bytes:
    protocol = draw(_protocols())
    body = draw(_l4_bytes(protocol))
    next_header = protocol
    count = draw(st.one_of(st.integers(0, 3), st.integers(0, 11), st.sampled_from((8, 9))))
    for _ in range(count):
        kind = draw(st.sampled_from(sorted(fr.EXT_HEADERS.values())))
        if kind == fr.IPV6_FRAGMENT:
            offset = draw(st.one_of(st.just(0), st.integers(0, 0x1FFF)))
            body = fr.fragment_header(next_header, offset, draw(st.booleans())) + body
        else:
            body = fr.ext_header(next_header, draw(st.sampled_from((0, 0, 1, 3)))) + body
        next_header = kind
    return fr.ipv6(
        draw_address(draw, Family.IPV6),
        draw_address(draw, Family.IPV6),
        next_header,
        body,
        version=draw(st.one_of(st.just(6), st.integers(0, 15))),
        payload_length=draw(st.one_of(st.none(), st.none(), st.integers(0, len(body) + 16))),
    )


@st.composite
def hostile_frames(draw: st.DrawFn) -> bytes:
    """Frames with wrong or odd headers: 0-3 VLAN tags, bad IHL/version/lengths, long chains."""
    tags = draw(st.integers(0, 3))
    tpids = draw(
        st.lists(st.sampled_from((fr.ETH_P_8021Q, fr.ETH_P_8021AD)), min_size=tags, max_size=tags)
    )
    vlans = draw(st.lists(st.integers(0, 0xFFFF), min_size=tags, max_size=tags))
    kind = draw(st.sampled_from(("ipv4", "ipv6", "ipv4", "ipv6", "other")))
    if kind == "ipv4":
        return fr.ethernet(fr.ETH_P_IP, vlans, tpids) + draw(_hostile_ipv4())
    if kind == "ipv6":
        return fr.ethernet(fr.ETH_P_IPV6, vlans, tpids) + draw(_hostile_ipv6())
    ethertype = draw(
        st.one_of(st.sampled_from((0x0806, 0x88CC, 0x8847, 0x0000)), st.integers(0, 0xFFFF))
    )
    return fr.ethernet(ethertype, vlans, tpids) + draw(st.binary(max_size=64))


@st.composite
def truncated(draw: st.DrawFn, frame_strategy: st.SearchStrategy[bytes]) -> bytes:
    """A frame cut at a drawn length: every offset is reachable."""
    frame = draw(frame_strategy)
    return frame[: draw(st.integers(0, len(frame)))]


@st.composite
def padded(draw: st.DrawFn, frame_strategy: st.SearchStrategy[bytes]) -> bytes:
    """A frame with trailing bytes after the IP packet (Ethernet minimum-size padding and more)."""
    return draw(frame_strategy) + draw(st.binary(min_size=1, max_size=32))


@st.composite
def flipped(draw: st.DrawFn, frame_strategy: st.SearchStrategy[bytes]) -> bytes:
    """A frame with one byte overwritten."""
    frame = bytearray(draw(frame_strategy))
    if frame:
        frame[draw(st.integers(0, len(frame) - 1))] = draw(st.integers(0, 255))
    return bytes(frame)


def frames(policy: Policy | None = None) -> st.SearchStrategy[bytes]:
    """Any frame: mostly valid (near `policy`'s rules when given), often hostile or cut."""
    valid = valid_frames(policy)
    return st.one_of(
        valid,
        valid,
        valid,
        hostile_frames(),
        truncated(st.one_of(valid, hostile_frames())),
        padded(valid),
        flipped(valid),
        st.binary(max_size=80),
    )


def frames_for(policy: Policy) -> st.SearchStrategy[bytes]:
    return frames(policy)


@st.composite
def policy_and_frames(
    draw: st.DrawFn, max_rules: int = 30, max_frames: int = 20
) -> tuple[Policy, list[bytes]]:
    policy = draw(policies(max_rules=max_rules))
    return policy, draw(st.lists(frames_for(policy), min_size=1, max_size=max_frames))
