"""regopy's input node tree for a policy, built straight from the IR in the shape of policy_doc.

rego_input.policy_doc defines the document; this walk pushes the same nodes in the same
key order without the intermediate dict, one ctypes call per node (the engine's floor).
"""

from __future__ import annotations

import ctypes
from collections.abc import Callable
from json.encoder import encode_basestring
from typing import Any

from fwc.compiler.gate.input import FAMILY_NAMES
from fwc.compiler.policy.ir import TCP_FLAGS, AddressRange, Family, Policy, PortRange, Rule

_Push = Callable[..., Any]


class _Calls:
    """regopy's regoInput* functions, bound to one input handle, in their cheapest form.

    The functions only push nodes on the input's stack, so they are called through
    PyDLL, which keeps the GIL instead of releasing and taking it back around every
    call. Pointer, string and count arguments need no conversion and go without
    argtypes; integers and booleans keep exact 64-bit and 8-bit prototypes. Together
    this takes a third off each of the million calls of a 10,000-rule policy.
    """

    def __init__(self) -> None:
        from regopy.rego_shared import rego

        raw = ctypes.PyDLL(rego._name)
        self.handle = rego.regoNewInput()
        self.pointer = ctypes.c_void_p(self.handle)
        self.string: _Push = raw.regoInputString
        self.item: _Push = raw.regoInputObjectItem
        self.obj: _Push = raw.regoInputObject
        self.array: _Push = raw.regoInputArray
        self.null: _Push = raw.regoInputNull
        self.integer: _Push = raw.regoInputInt
        self.integer.argtypes = [ctypes.c_void_p, ctypes.c_int64]
        self.boolean: _Push = raw.regoInputBoolean
        self.boolean.argtypes = [ctypes.c_void_p, ctypes.c_bool]


def engine_text(value: str) -> bytes:
    """A string as regoInputString wants it: in its JSON-escaped form, the form the engine
    keeps for every string it parses (module literals, JSON and term input). Passed raw,
    a quote, backslash or newline would compare unequal to the same literal in a module
    and come back unescaped, breaking the JSON answer."""
    return encode_basestring(value)[1:-1].encode()


_FAMILY = {family: name.encode() for family, name in FAMILY_NAMES.items()}
_FLAG_NAMES = [(name.encode(), bit) for name, bit in TCP_FLAGS.items()]


def policy_input(policy: Policy) -> Any:
    """A regoInput handle holding policy_doc(policy), ready for regoSetInput."""
    calls = _Calls()
    h = calls.pointer
    string, item, obj, array = calls.string, calls.item, calls.obj, calls.array
    null, integer, boolean = calls.null, calls.integer, calls.boolean
    encoded: dict[str, bytes] = {}
    addresses: dict[AddressRange, tuple[int, bytes, bytes, bytes, bytes]] = {}

    def text(value: str) -> None:
        cached = encoded.get(value)
        if cached is None:
            cached = encoded[value] = engine_text(value)
        string(h, cached)

    def address(entry: AddressRange) -> None:
        parts = addresses.get(entry)
        if parts is None:
            parts = addresses[entry] = _address_parts(entry)
        prefix_len, family, first, last, cidr = parts
        string(h, b"prefix_len")
        integer(h, prefix_len)
        item(h)
        string(h, b"family")
        string(h, family)
        item(h)
        string(h, b"first")
        string(h, first)
        item(h)
        string(h, b"last")
        string(h, last)
        item(h)
        string(h, b"cidr")
        string(h, cidr)
        item(h)
        obj(h, 5)

    def port(entry: PortRange) -> None:
        string(h, b"first")
        integer(h, entry.first)
        item(h)
        string(h, b"last")
        integer(h, entry.last)
        item(h)
        obj(h, 2)

    def addresses_of(entries: tuple[AddressRange, ...]) -> None:
        for entry in entries:
            address(entry)
        array(h, len(entries))

    def ports_of(entries: tuple[PortRange, ...]) -> None:
        for entry in entries:
            port(entry)
        array(h, len(entries))

    def flags(bits: int) -> None:
        count = 0
        for name, bit in _FLAG_NAMES:
            if bits & bit:
                string(h, name)
                count += 1
        array(h, count)

    def optional_int(value: int | None) -> None:
        if value is None:
            null(h)
        else:
            integer(h, value)

    def rule(r: Rule) -> None:
        string(h, b"action")
        text(r.action.value)
        item(h)
        string(h, b"protocol")
        text(r.protocol.value)
        item(h)
        string(h, b"source_cidrs")
        addresses_of(r.sources)
        item(h)
        string(h, b"destination_ports")
        ports_of(r.destination_ports)
        item(h)
        string(h, b"description")
        string(h, engine_text(r.description))
        item(h)
        string(h, b"icmp_types")
        for icmp_type in r.icmp_types:
            integer(h, icmp_type)
        array(h, len(r.icmp_types))
        item(h)
        string(h, b"source_ports")
        ports_of(r.source_ports)
        item(h)
        string(h, b"tcp_flags")
        string(h, b"set")
        flags(r.tcp_flags_set)
        item(h)
        string(h, b"clear")
        flags(r.tcp_flags_clear)
        item(h)
        obj(h, 2)
        item(h)
        string(h, b"rate_limit_pps")
        optional_int(r.rate_limit_pps)
        item(h)
        string(h, b"name")
        string(h, engine_text(r.name))
        item(h)
        string(h, b"id")
        integer(h, r.id)
        item(h)
        string(h, b"destination_cidrs")
        addresses_of(r.destinations)
        item(h)
        string(h, b"priority")
        integer(h, r.priority)
        item(h)
        string(h, b"rate_limit_burst")
        optional_int(r.rate_limit_burst)
        item(h)
        string(h, b"log")
        boolean(h, r.log)
        item(h)
        string(h, b"file")
        text(r.location.file)
        item(h)
        string(h, b"line")
        integer(h, r.location.line)
        item(h)
        obj(h, 17)

    def strings(values: tuple[str, ...]) -> None:
        for value in values:
            text(value)
        array(h, len(values))

    string(h, b"name")
    text(policy.name)
    item(h)
    string(h, b"default_action")
    text(policy.default_action.value)
    item(h)
    string(h, b"file")
    text(policy.source_file)
    item(h)
    string(h, b"sha256")
    text(policy.source_sha256)
    item(h)
    string(h, b"interfaces")
    string(h, b"include")
    strings(policy.interfaces.include)
    item(h)
    string(h, b"exclude")
    strings(policy.interfaces.exclude)
    item(h)
    obj(h, 2)
    item(h)
    string(h, b"sets")
    for name, entries in policy.sets:
        text(name)
        for entry in entries:
            if isinstance(entry, AddressRange):
                address(entry)
            else:
                port(entry)
        array(h, len(entries))
        item(h)
    obj(h, len(policy.sets))
    item(h)
    string(h, b"rules")
    for r in policy.rules:
        rule(r)
    array(h, len(policy.rules))
    item(h)
    obj(h, 7)
    return calls.handle


def _address_parts(entry: AddressRange) -> tuple[int, bytes, bytes, bytes, bytes]:
    """prefix_len, family, first, last and cidr of address_doc, the strings encoded."""
    network, prefix_len = entry.network, entry.prefix_len
    if entry.family is Family.IPV4:
        last = network | ((1 << (32 - prefix_len)) - 1)
        cidr = (
            f"{network >> 24}.{(network >> 16) & 255}.{(network >> 8) & 255}.{network & 255}"
            f"/{prefix_len}"
        )
        return prefix_len, _FAMILY[Family.IPV4], b"%08x" % network, b"%08x" % last, cidr.encode()
    last = network | ((1 << (128 - prefix_len)) - 1)
    return (
        prefix_len,
        _FAMILY[Family.IPV6],
        b"%032x" % network,
        b"%032x" % last,
        str(entry).encode(),
    )
