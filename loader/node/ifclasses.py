"""Keeps a program's interface-class map true: every interface's ifindex -> its class.

fw-load fills it before attaching and again on every link event, so a new or renamed
interface gets its class and a removed one leaves the map (docs/loader.md, Interface classes).
"""

from __future__ import annotations

from collections.abc import Iterable

from fwc.artifact.ifclass import IFACE_KEY, IFACE_VALUE, NO_CLASS, InterfaceClassTable, class_of
from fwc.loader.kernel import libbpf
from fwc.loader.node.netlink import Interface


def wanted(table: InterfaceClassTable, interfaces: Iterable[Interface]) -> dict[int, int]:
    """ifindex -> class of every interface whose class is not NO_CLASS (a miss is NO_CLASS)."""
    out: dict[int, int] = {}
    for iface in interfaces:
        klass = class_of(iface.name, table)
        if klass != NO_CLASS:
            out[iface.index] = klass
    return out


def sync(map_fd: int, table: InterfaceClassTable, interfaces: Iterable[Interface]) -> list[str]:
    """Write what differs and delete what no longer exists; one line per change."""
    present = list(interfaces)
    names = {i.index: i.name for i in present}
    want = wanted(table, present)
    have: dict[int, int] = {}
    key = libbpf.map_next_key(map_fd, None, IFACE_KEY.size)
    while key is not None:
        value = libbpf.map_lookup(map_fd, key, IFACE_VALUE.size)
        if value is not None:
            have[IFACE_KEY.unpack(key)[0]] = IFACE_VALUE.unpack(value)[0]
        key = libbpf.map_next_key(map_fd, key, IFACE_KEY.size)
    changes: list[str] = []
    for index, klass in sorted(want.items()):
        if have.get(index) != klass:
            libbpf.map_update(map_fd, IFACE_KEY.pack(index), IFACE_VALUE.pack(klass))
            changes.append(f"{names[index]}: interface class {klass}")
    for index in sorted(set(have) - set(want)):
        libbpf.map_delete(map_fd, IFACE_KEY.pack(index))
        if index in names:
            changes.append(f"{names[index]}: no interface class")
    return changes
