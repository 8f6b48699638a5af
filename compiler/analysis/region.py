"""Writing a cube for people: as a rule's match (fields of a policy rule) and one example packet.

A cube whose TCP flags or protocols no single rule could write is first split into
cubes that can be written (`writable`), so every written match is exact.
"""

from __future__ import annotations

import functools
import ipaddress
from typing import Any

from fwc.compiler.analysis.match import (
    ABSENT,
    ALL_PROTOCOLS,
    BYTE_VALUES,
    NO_PORT,
    NON_FIRST,
    OTHER,
    PROTOCOL_CLASSES,
    PROTOCOL_NUMBERS,
    TCP,
    V4,
    WHOLE,
    flag_values,
)
from fwc.compiler.analysis.space import (
    ALL_STATES,
    ANY_INTERFACE,
    TRACKED_STATES,
    UNTRACKED,
    Cube,
    Intervals,
    Region,
)
from fwc.compiler.policy.interfaces import NO_INTERFACES, InterfaceClasses
from fwc.compiler.policy.ir import CT_STATES, TCP_FLAGS

Match = dict[str, Any]
PacketCase = dict[str, Any]

_FLAG_BITS = sorted(TCP_FLAGS.values(), reverse=True)


def _lowest(mask: int) -> int:
    return (mask & -mask).bit_length() - 1


def _bits(mask: int) -> list[int]:
    out = []
    while mask:
        low = mask & -mask
        out.append(low)
        mask ^= low
    return out


@functools.cache
def _flag_terms(values: int) -> tuple[tuple[int, int], ...]:
    """Disjoint (must_set, must_clear) patterns whose flag bytes together are exactly `values`."""
    out: list[tuple[int, int]] = []

    def split(must_set: int, must_clear: int) -> None:
        inside = flag_values(must_set, must_clear) & BYTE_VALUES
        if inside & values == inside:
            out.append((must_set, must_clear))
        elif inside & values:
            bit = _split_bit(values, must_set, must_clear)
            split(must_set | bit, must_clear)
            split(must_set, must_clear | bit)

    split(0, 0)
    return tuple(out)


def _split_bit(values: int, must_set: int, must_clear: int) -> int:
    """A free flag bit to split on: one with a half wholly in or out of `values` if there
    is one, since that half is then finished and the patterns stay few."""
    free = [bit for bit in _FLAG_BITS if not bit & (must_set | must_clear)]
    for bit in free:
        for half in (
            flag_values(must_set | bit, must_clear),
            flag_values(must_set, must_clear | bit),
        ):
            part = half & BYTE_VALUES
            if part & values in (0, part):
                return bit
    return free[0]


def writable(cube: Cube) -> Region:
    """`cube` as cubes of one protocol class (or all), one TCP flag pattern and one
    interface class (or all) each."""
    if cube.interface != ANY_INTERFACE and cube.interface & (cube.interface - 1):
        return [
            one for bit in _bits(cube.interface) for one in writable(cube._replace(interface=bit))
        ]
    classes = [ALL_PROTOCOLS] if cube.protocol == ALL_PROTOCOLS else _bits(cube.protocol)
    out: Region = []
    for protocol in classes:
        one = cube._replace(protocol=protocol)
        if protocol != TCP or one.tcp_flags in (BYTE_VALUES, ABSENT):
            out.append(one)
            continue
        for must_set, must_clear in _flag_terms(one.tcp_flags):
            out.append(one._replace(tcp_flags=flag_values(must_set, must_clear)))
    return out


def _cidrs(spans: Intervals, family_bit: int) -> list[str]:
    make = ipaddress.IPv4Address if family_bit == V4 else ipaddress.IPv6Address
    out: list[str] = []
    for lo, hi in spans:
        out.extend(str(net) for net in ipaddress.summarize_address_range(make(lo), make(hi)))
    return out


def _ports(spans: Intervals) -> list[int | str]:
    if spans[-1][1] == NO_PORT or spans == ((0, 65535),):
        return []
    return [lo if lo == hi else f"{lo}-{hi}" for lo, hi in spans]


def _flag_text(must_set: int, must_clear: int) -> str:
    words = [name for name, bit in TCP_FLAGS.items() if must_set & bit]
    words += [f"!{name}" for name, bit in TCP_FLAGS.items() if must_clear & bit]
    return ",".join(words)


def flag_pattern(values: int) -> tuple[int, int] | None:
    """The (must_set, must_clear) bits of a writable cube's flags; None when it tests none."""
    if values & BYTE_VALUES in (BYTE_VALUES, 0):
        return None
    terms = _flag_terms(values)
    assert len(terms) == 1, "write a cube after writable()"
    return terms[0]


def _flag_pattern(values: int) -> str | None:
    pattern = flag_pattern(values)
    return None if pattern is None else _flag_text(*pattern)


def _protocol_name(protocol: int) -> str:
    if protocol == ALL_PROTOCOLS:
        return "any"
    return PROTOCOL_CLASSES[_lowest(protocol)]


def match_of(cube: Cube, classes: InterfaceClasses = NO_INTERFACES) -> Match:
    """The cube as a rule's match; `fragment` is "non-first" or "first-or-none"; with
    interface classes, `interface` says in words which interfaces (one class: writable)."""
    icmp = cube.icmp_type
    match: Match = {
        "protocol": _protocol_name(cube.protocol),
        "source_cidrs": _cidrs(cube.src, cube.family),
        "destination_cidrs": _cidrs(cube.dst, cube.family),
        "source_ports": _ports(cube.sport),
        "destination_ports": _ports(cube.dport),
        "tcp_flags": _flag_pattern(cube.tcp_flags),
        "icmp_types": [] if icmp in (BYTE_VALUES, ABSENT) else [_lowest(b) for b in _bits(icmp)],
        "fragment": "non-first" if cube.fragment == NON_FIRST else "first-or-none",
    }
    if classes.used and cube.interface != ANY_INTERFACE:
        match["interface"] = classes.describe(_lowest(cube.interface))
    if cube.state != ALL_STATES:
        names = [name for name, bit in CT_STATES.items() if cube.state & bit]
        match["state"] = [*names, "untracked"] if cube.state & UNTRACKED else names
    return match


def _address(value: int, family_bit: int) -> str:
    make = ipaddress.IPv4Address if family_bit == V4 else ipaddress.IPv6Address
    return str(make(value))


# States an example prefers: untracked (the packet as it comes, e.g. an ICMP error quoting
# nothing), then new, established, related, invalid.
_USUAL_STATES = (4, 3, 1, 2, 0)
# Flag bytes an example prefers, most familiar first: SYN, ACK, SYN+ACK.
_USUAL_FLAGS = (0x02, 0x10, 0x12)
_USUAL_SOURCE_PORT = 12345


def _pick(spans: Intervals, usual: int | None = None, skip_first: bool = False) -> Intervals:
    """One value of `spans`: `usual` if there, else the first (with `skip_first`, the one
    after it when there is one: an address other than the network's)."""
    if usual is not None and any(lo <= usual <= hi for lo, hi in spans):
        return ((usual, usual),)
    lo, hi = spans[0]
    value = lo + 1 if skip_first and hi > lo else lo
    return ((value, value),)


def _pick_bit(mask: int, usual: tuple[int, ...] = ()) -> int:
    for value in usual:
        if mask >> value & 1:
            return 1 << value
    return mask & -mask


def point(cube: Cube) -> Cube:
    """One packet of the cube, as a cube of single values."""
    return Cube(
        _pick_bit(cube.family),
        _pick(cube.src, skip_first=True),
        _pick(cube.dst, skip_first=True),
        _pick_bit(cube.fragment),
        _pick_bit(cube.protocol),
        _pick(cube.sport, _USUAL_SOURCE_PORT),
        _pick(cube.dport),
        _pick_bit(cube.tcp_flags, _USUAL_FLAGS),
        _pick_bit(cube.icmp_type),
        cube.interface if cube.interface == ANY_INTERFACE else _pick_bit(cube.interface),
        _pick_bit(cube.state, _USUAL_STATES),
    )


def example_state(cube: Cube) -> str:
    """The connection state `example(cube)` is evaluated with (a case's `state`); an
    untracked example's is `new`, which it ignores."""
    bit = point(cube).state
    return next((name for name, value in CT_STATES.items() if value == bit), "new")


def example(cube: Cube, classes: InterfaceClasses = NO_INTERFACES) -> PacketCase:
    """The packet `point(cube)` as `fwc test` packet fields, and with interface classes, the
    name of an interface it arrives on (a case's `interface`)."""
    p = point(cube)
    proto: str | int = PROTOCOL_CLASSES[_lowest(p.protocol)]
    if p.protocol == OTHER:
        proto = PROTOCOL_NUMBERS[OTHER]
    packet: PacketCase = {
        "proto": proto,
        "src": _address(p.src[0][0], p.family),
        "dst": _address(p.dst[0][0], p.family),
    }
    if p.sport[0][0] != NO_PORT:
        packet["sport"] = p.sport[0][0]
        packet["dport"] = p.dport[0][0]
    if p.tcp_flags != ABSENT:
        packet["flags"] = _flag_text(_lowest(p.tcp_flags), 0)
    if p.icmp_type != ABSENT:
        packet["icmp_type"] = _lowest(p.icmp_type)
    if p.fragment == NON_FIRST:
        packet["fragment"] = "non-first"
    if p.icmp_type != ABSENT and p.state & TRACKED_STATES and p.fragment == WHOLE:
        # A tracked ICMP error quotes a TCP packet (an untracked one quotes nothing).
        packet["inner"] = {"proto": "tcp"}
    if classes.used and p.interface != ANY_INTERFACE:
        packet["interface"] = classes.examples[_lowest(p.interface)]
    if cube.state != ALL_STATES and p.state & TRACKED_STATES:
        packet["state"] = example_state(cube)  # a case's `state:`, beside its packet
    return packet
