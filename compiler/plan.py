"""The plan: what the renderer emits and what the build embeds, decided from the IR."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from fwc.compiler.ir import Policy


@dataclass(frozen=True)
class MapInfo:
    """A map the program declares, as the manifest reports it."""

    name: str
    type: str  # libbpf's name without the prefix: "percpu_array", "lpm_trie", ...
    key_size: int
    value_size: int
    max_entries: int


@dataclass(frozen=True)
class Seed:
    """Initial contents of one map, written by fw-load before the program is attached."""

    map: str
    key_size: int
    value_size: int
    records: bytes  # count * (key_size + value_size) bytes, key then value

    @property
    def count(self) -> int:
        return len(self.records) // (self.key_size + self.value_size)

    @property
    def section(self) -> str:
        return f".fwc.seed.{self.map}"


@dataclass(frozen=True)
class Plan:
    """Everything the renderer and the build need; produced by one strategy module."""

    policy: Policy
    strategy: str  # "constants" or "tables"
    template: str  # file name under templates/bpf/
    context: dict[str, Any]  # Jinja variables: already-escaped strings and integers only
    maps: tuple[MapInfo, ...]
    seeds: tuple[Seed, ...] = ()
    dry_run: bool = False
    log_rate: int = 0
    counter_slots: tuple[str, ...] = field(default=())  # slot index -> name, see docs/artifact.md
