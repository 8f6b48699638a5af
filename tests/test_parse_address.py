"""The C-library fast path of address parsing agrees with `ipaddress` wherever it answers, and
the parsed values behave as the CIDRs they name."""

from __future__ import annotations

import ipaddress

from hypothesis import given
from hypothesis import strategies as st

from fwc.compiler.policy.ir import AddressRange, Family
from fwc.compiler.policy.normalize import _parse_plain, parse_address, parse_any_address

_LENGTH = st.one_of(
    st.just(""),
    st.integers(0, 140).map(lambda n: f"/{n}"),
    st.sampled_from(["/", "/024", "/+8", "/ 8", "/8 ", "/0x8", "/255.255.0.0", "/٣"]),
)
_V4 = st.integers(0, 2**32 - 1).map(lambda v: str(ipaddress.IPv4Address(v)))
_V6 = st.integers(0, 2**128 - 1).map(lambda v: ipaddress.IPv6Address(v).exploded)
_V6_SHORT = st.integers(0, 2**128 - 1).map(lambda v: str(ipaddress.IPv6Address(v)))
_ODD = st.sampled_from(
    [
        "01.2.3.4",
        "1.2.3",
        "1.2.3.4.5",
        "256.1.1.1",
        "::ffff:1.2.3.4",
        "fe80::1%eth0",
        "1:2:3:4:5:6:7::",
        "::1:2:3:4:5:6:7:8",
        ":::",
        "1::2::3",
        "0x1.2.3.4",
        "1.2.3.04",
    ]
)
_TEXT = st.tuples(st.one_of(_V4, _V6, _V6_SHORT, _ODD, st.text(max_size=12)), _LENGTH).map("".join)


@given(_TEXT)
def test_fast_path_agrees_with_ipaddress(text: str) -> None:
    fast = _parse_plain(text)
    if fast is not None:
        assert fast == parse_any_address(text)
    assert parse_address(text) == (fast if fast is not None else parse_any_address(text.strip()))


def test_common_spellings_take_the_fast_path() -> None:
    for text in ("192.0.2.0/24", "192.0.2.7", "2001:db8::/32", "2001:db8::1", "::/0"):
        assert _parse_plain(text) is not None


def test_embedded_nul_is_not_an_address() -> None:
    for text in ("\x00", "10.0.0.1\x00", "10.0.0.0/8\x00", "::1\x00"):
        assert _parse_plain(text) is None
        assert parse_address(text) is None


_Network = ipaddress.IPv4Network | ipaddress.IPv6Network
_NET = st.one_of(
    st.tuples(st.integers(0, 2**32 - 1), st.integers(0, 32)).map(
        lambda t: ipaddress.IPv4Network(t, strict=False)
    ),
    st.tuples(st.integers(0, 2**128 - 1), st.integers(0, 128)).map(
        lambda t: ipaddress.IPv6Network(t, strict=False)
    ),
)


def _range(net: _Network) -> AddressRange:
    family = Family.IPV4 if net.version == 4 else Family.IPV6
    return AddressRange(family, int(net.network_address), net.prefixlen)


@given(_NET, _NET)
def test_address_ranges_compare_as_their_cidrs(a: _Network, b: _Network) -> None:
    x, y = _range(a), _range(b)
    assert str(x) == str(a)
    assert x.first == int(a.network_address) and x.last == int(a.broadcast_address)
    assert (x == y) == (a == b)
    if x == y:
        assert hash(x) == hash(y)
    # Ordered by family, then network, then prefix length: the order the analyses sort by.
    assert (x < y) == (
        (a.version, int(a.network_address), a.prefixlen)
        < (b.version, int(b.network_address), b.prefixlen)
    )
