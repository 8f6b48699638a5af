"""The manifest as typed data: what an artifact says about itself (docs/artifact.md).

The two tables that grow with the policy, rules and counter slots, are columns (tuples of
equal length), as they are encoded: at 10,000 rules a live update compares and maps them
whole instead of building 20,000 row objects. `rows()` gives the rows.
"""

from __future__ import annotations

from dataclasses import dataclass

from fwc.artifact.ifclass import InterfaceClassTable
from fwc.artifact.layout import FORMAT, RECORDS


@dataclass(frozen=True)
class Interfaces:
    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()


@dataclass(frozen=True)
class PolicyInfo:
    name: str
    sha256: str  # of the policy source file's bytes: what the artifact was compiled from
    default_action: str = ""
    interfaces: Interfaces = Interfaces()


@dataclass(frozen=True)
class CompilerInfo:
    version: str
    name: str = ""
    clang: str = ""


@dataclass(frozen=True)
class ProgramEntry:
    name: str
    section: str
    insn_count: int


@dataclass(frozen=True)
class RuleEntry:
    id: int
    name: str
    priority: int
    action: str


@dataclass(frozen=True)
class RuleTable:
    """Every rule, as columns."""

    id: tuple[int, ...] = ()
    name: tuple[str, ...] = ()
    priority: tuple[int, ...] = ()
    action: tuple[str, ...] = ()

    def rows(self) -> list[RuleEntry]:
        """Every rule, in id order."""
        return [
            RuleEntry(*row)
            for row in sorted(zip(self.id, self.name, self.priority, self.action, strict=True))
        ]


@dataclass(frozen=True)
class CounterSlot:
    index: int
    name: str


@dataclass(frozen=True)
class SlotTable:
    """Every counter slot (index -> name), as columns."""

    index: tuple[int, ...] = ()
    name: tuple[str, ...] = ()

    def pairs(self) -> list[tuple[int, str]]:
        """(index, name) of every slot, in index order."""
        return sorted(zip(self.index, self.name, strict=True))

    def rows(self) -> list[CounterSlot]:
        """Every slot, in index order."""
        return [CounterSlot(index, name) for index, name in self.pairs()]


@dataclass(frozen=True)
class Counters:
    map: str
    slots: SlotTable


@dataclass(frozen=True)
class MapEntry:
    name: str
    type: str  # libbpf's name: "percpu_array", "lpm_trie", ...
    key_size: int
    value_size: int
    max_entries: int


@dataclass(frozen=True)
class SeedEntry:
    """Contents the loader writes into `map` before attaching, from ELF section `section`."""

    map: str
    section: str
    key_size: int
    value_size: int
    count: int
    layout: str = RECORDS


@dataclass(frozen=True)
class SetTrie:
    """One address trie a set's members are painted into, and per class index of that trie
    the class with the set's predicates added, and removed (-1: the live tables have none)."""

    table: str  # "s4", "s6", "d4", "d6"
    add: tuple[int, ...]
    remove: tuple[int, ...]


@dataclass(frozen=True)
class SetEntry:
    """A policy set, and what changing its members live needs (artifact/sets.py)."""

    name: str
    refused: str = ""  # why its members cannot change without a compile; "" when they can
    members: str = ""  # generation 0 of its member map
    tries: tuple[SetTrie, ...] = ()


@dataclass(frozen=True)
class SetChange:
    """What live set changes did to one set since the artifact was applied."""

    name: str
    added: int
    removed: int
    members: int  # members now


@dataclass(frozen=True)
class DirtyMap:
    """Byte ranges of a table (generation base name) that a set change wrote: start, end,
    start, end..."""

    map: str
    ranges: tuple[int, ...]


@dataclass(frozen=True)
class TrieUse:
    """Slots and skip records a trie's live generation uses (set changes allocate above)."""

    table: str
    slots: int
    skips: int


@dataclass(frozen=True)
class LoaderRecord:
    """What fw-load adds to the manifest it pins: the program's digest, the live generation,
    and the identity of the artifact applied last (the sha256 of its file)."""

    program_sha256: str | None = None
    generation: int = 0
    flipped_at: int | None = None  # CLOCK_BOOTTIME ns of the last flip
    artifact_sha256: str | None = None
    # live set changes since the artifact was applied, and the tries they grew
    sets: tuple[SetChange, ...] = ()
    tries: tuple[TrieUse, ...] = ()
    # how many set changes were made since the artifact was applied, and what the last one
    # wrote into the generation now live: the idle one holds the rest (docs/tables.md)
    set_changes: int = 0
    dirty: tuple[DirtyMap, ...] = ()


@dataclass(frozen=True)
class Manifest:
    policy: PolicyInfo
    compiler: CompilerInfo
    strategy: str
    dry_run: bool
    log_rate: int
    program: ProgramEntry
    rules: RuleTable
    counters: Counters
    maps: tuple[MapEntry, ...]
    seeds: tuple[SeedEntry, ...]
    rate_limit_buckets: int = 0
    format: int = FORMAT
    fw_load: LoaderRecord | None = None  # only in the manifest fw-load pins
    interface_classes: InterfaceClassTable | None = None  # only when a rule names interfaces
    conntrack: bool = False  # a rule matches connection state: the program calls conntrack
    sets: tuple[SetEntry, ...] = ()  # tables strategy: the policy's sets

    def set(self, name: str) -> SetEntry | None:
        """The set called `name`, or None."""
        return next((s for s in self.sets if s.name == name), None)

    def map(self, name: str) -> MapEntry | None:
        """The map called `name`, or None."""
        return next((m for m in self.maps if m.name == name), None)
