"""Keeps a program's interface-class maps true: every interface's ifindex -> its class.

fw-load fills them before attaching and again on every link event, so a new or renamed
interface gets its class and a removed one leaves the maps (docs/loader.md, Interface
classes). Ifindexes below IFACES_ENTRIES live in the array `fwc_ifaces`, the others in
the hash `fwc_ifaces_hi`; class 0 is the array's zero and the hash's miss.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable

from fwc.artifact.ifclass import (
    IFACE_KEY,
    IFACE_VALUE,
    IFACES_ENTRIES,
    NO_CLASS,
    InterfaceClassTable,
    class_of,
)
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


def held(fd: int) -> dict[int, int]:
    """ifindex -> class of every entry of one map that is not NO_CLASS."""
    keys, values = libbpf.map_items(fd, IFACE_KEY.size, IFACE_VALUE.size)
    count = len(keys) // IFACE_KEY.size
    indexes = struct.unpack(f"<{count}I", keys)
    classes = struct.unpack(f"<{count}I", values)
    return {i: c for i, c in zip(indexes, classes, strict=True) if c != NO_CLASS}


def sync(
    array_fd: int, hash_fd: int, table: InterfaceClassTable, interfaces: Iterable[Interface]
) -> list[str]:
    """Write what differs and clear what no longer exists; one line per change."""
    present = list(interfaces)
    names = {i.index: i.name for i in present}
    want = wanted(table, present)
    have = {**held(array_fd), **held(hash_fd)}
    changes: list[str] = []
    for index, klass in sorted(want.items()):
        if have.get(index) != klass:
            fd = array_fd if index < IFACES_ENTRIES else hash_fd
            libbpf.map_update(fd, IFACE_KEY.pack(index), IFACE_VALUE.pack(klass))
            changes.append(f"{names[index]}: interface class {klass}")
    for index in sorted(set(have) - set(want)):
        if index < IFACES_ENTRIES:
            libbpf.map_update(array_fd, IFACE_KEY.pack(index), IFACE_VALUE.pack(NO_CLASS))
        else:
            libbpf.map_delete(hash_fd, IFACE_KEY.pack(index))
        if index in names:
            changes.append(f"{names[index]}: no interface class")
    return changes
