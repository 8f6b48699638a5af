"""Frames built from packet fields: exact bytes where it matters, round trips through the parser."""

from __future__ import annotations

import struct

import pytest
import strategies
from hypothesis import given, settings

from fwc.compiler.oracle import frames as fr
from fwc.compiler.oracle.packet import parse
from fwc.compiler.policy.ir import Family


def test_defaults_are_an_ipv4_tcp_syn() -> None:
    frame = fr.build_frame(fr.fields_from_mapping({}))
    assert len(frame) == 14 + 20 + 20
    assert frame[12:14] == b"\x08\x00"
    assert frame[14] == 0x45
    assert struct.unpack("!H", frame[16:18])[0] == 40
    assert frame[23] == 6
    assert frame[26:34] == bytes([192, 0, 2, 1, 192, 0, 2, 2])
    assert struct.unpack("!HH", frame[34:38]) == (12345, 80)
    assert frame[46] >> 4 == 5
    assert frame[47] == 0x02


def test_ipv4_header_checksum_is_valid() -> None:
    frame = fr.build_frame(fr.fields_from_mapping({"ip_options": 8, "ttl": 3}))
    header = frame[14 : 14 + 28]
    total = sum(struct.unpack("!14H", header))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    assert total == 0xFFFF


def test_two_vlan_tags_are_802_1ad_outside_802_1q() -> None:
    frame = fr.build_frame(fr.fields_from_mapping({"vlan": [100, 200]}))
    assert frame[12:22] == bytes.fromhex("88a8 0064 8100 00c8 0800")


def test_ipv6_chain_order_and_lengths() -> None:
    fields = fr.fields_from_mapping(
        {
            "proto": "udp",
            "src": "2001:db8::1",
            "ext_headers": ["hop", "routing"],
            "fragment": "first",
        }
    )
    frame = fr.build_frame(fields)
    assert frame[20] == 0  # IPv6 next header: hop-by-hop
    assert frame[54] == 43 and frame[62] == 44 and frame[70] == 17
    assert struct.unpack("!H", frame[72:74])[0] == 1  # offset 0, M set
    assert struct.unpack("!H", frame[18:20])[0] == len(frame) - 54


def test_family_follows_the_addresses_and_the_protocol() -> None:
    assert fr.fields_from_mapping({"dst": "2001:db8::9"}).family is Family.IPV6
    assert fr.fields_from_mapping({"proto": "icmpv6"}).family is Family.IPV6
    assert fr.fields_from_mapping({"proto": "icmpv6"}).icmp_type == 128
    assert fr.fields_from_mapping({"proto": "icmp"}).icmp_type == 8
    assert fr.fields_from_mapping({"ext_headers": ["dest"]}).family is Family.IPV6


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"colour": "red"}, "unknown packet field `colour`"),
        ({"proto": "sctp"}, "`proto` must be tcp, udp, icmp, icmpv6 or a number"),
        ({"proto": 256}, "outside 0..255"),
        ({"src": "10.0.0.300"}, "`src` '10.0.0.300' is not an IPv4 or IPv6 address"),
        ({"src": "10.0.0.1", "dst": "::1"}, "different address families"),
        ({"dport": 70000}, "`dport` must be an integer 0..65535"),
        ({"sport": "80"}, "`sport` must be an integer"),
        ({"flags": "SYN,FOO"}, "unknown TCP flag 'FOO'"),
        ({"vlan": 4096}, "`vlan` must be a VLAN id 0..4095"),
        ({"fragment": "middle"}, "`fragment` must be one of"),
        ({"ip_options": 6}, "multiple of 4"),
        ({"ip_options": 44}, "0..40"),
        ({"ip_options": 4, "src": "::1"}, "IPv4 only"),
        ({"ext_headers": ["hop"], "src": "10.0.0.1"}, "IPv6 only"),
        ({"ext_headers": ["ah"]}, "unknown header 'ah'"),
        ({"proto": 43, "src": "::1"}, "list it in `ext_headers`"),
    ],
)
def test_bad_fields_name_the_field(values: dict[str, object], message: str) -> None:
    with pytest.raises(fr.FrameError) as caught:
        fr.fields_from_mapping(values)
    assert message in str(caught.value)


@settings(max_examples=300, deadline=None)
@given(strategies.packet_fields())
def test_built_frames_parse_back_to_their_fields(fields: fr.PacketFields) -> None:
    packet = parse(fr.build_frame(fields))
    assert packet.klass == "ip", packet.reason
    assert packet.vlans == fields.vlans
    assert (packet.family, packet.src, packet.dst) == (fields.family, fields.src, fields.dst)
    assert packet.protocol == fields.protocol
    assert packet.fragment == fields.fragment
    if fields.fragment == "non-first":
        assert (packet.sport, packet.tcp_flags, packet.icmp_type) == (None, None, None)
        return
    if fields.protocol in (6, 17):
        assert (packet.sport, packet.dport) == (fields.sport, fields.dport)
    if fields.protocol == 6:
        assert packet.tcp_flags == fields.tcp_flags
    if fields.protocol in (1, 58):
        assert packet.icmp_type == fields.icmp_type
