"""The interface classes an artifact tells apart, and the class of an interface name.

The compiler lists the policy's interface patterns and the classes (sets of pattern
indexes) its program tells apart; fw-load writes each attached interface's class into the
map (docs/artifact.md, Interface classes). Both use `class_of`.
"""

from __future__ import annotations

import fnmatch
import struct
from collections.abc import Sequence
from dataclasses import dataclass

# ifindex -> class: an array for the ifindexes below IFACES_ENTRIES (a lookup the verifier
# inlines), a hash for the rest (a namespace that has made thousands of interfaces)
IFACES_MAP = "fwc_ifaces"
IFACES_ENTRIES = 4096
IFACES_HASH_MAP = "fwc_ifaces_hi"
IFACES_HASH_ENTRIES = 1024
IFACE_KEY = struct.Struct("<I")  # ifindex
IFACE_VALUE = struct.Struct("<I")  # class index
NO_CLASS = 0  # class 0: the interfaces no pattern matches, and unknown ones
# BPF_PROG_TEST_RUN without a context runs an XDP program as if on the namespace's loopback
TEST_RUN_IFINDEX = 1


@dataclass(frozen=True)
class InterfaceClassTable:
    """`patterns` (globs), and per class the indexes of the patterns its names match."""

    patterns: tuple[str, ...]
    classes: tuple[tuple[int, ...], ...]
    map: str = IFACES_MAP  # the array; ifindexes from IFACES_ENTRIES on live in IFACES_HASH_MAP


def class_of(name: str, table: InterfaceClassTable) -> int:
    """The class of the interface called `name` (NO_CLASS when its patterns form none)."""
    return class_of_patterns(name, table.patterns, table.classes)


def class_of_patterns(
    name: str, patterns: Sequence[str], classes: Sequence[tuple[int, ...]]
) -> int:
    matched = tuple(i for i, p in enumerate(patterns) if fnmatch.fnmatchcase(name, p))
    for index, members in enumerate(classes):
        if tuple(members) == matched:
            return index
    return NO_CLASS
