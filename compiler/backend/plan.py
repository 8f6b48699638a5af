"""The plan: what the renderer emits and what the build embeds, decided from the IR."""

from __future__ import annotations

import importlib
import importlib.util
import re
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING

from fwc.artifact.ifclass import (
    IFACE_KEY,
    IFACE_VALUE,
    IFACES_ENTRIES,
    IFACES_HASH_ENTRIES,
    IFACES_HASH_MAP,
    IFACES_MAP,
)
from fwc.artifact.layout import IMAGE, RECORDS, image_records, image_stride
from fwc.artifact.manifest import SetEntry
from fwc.compiler.backend.options import DEFAULT_OPTIONS, CompileOptions
from fwc.compiler.policy.findings import Finding, Location, Severity, error
from fwc.compiler.policy.interfaces import (
    NO_INTERFACES,
    InterfaceClasses,
    TooManyInterfaceClasses,
    program_classes,
)
from fwc.compiler.policy.ir import Action, Policy

if TYPE_CHECKING:
    from fwc.compiler.backend.constants import ConstantsProgram
    from fwc.compiler.backend.tables.plan import TablesProgram


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
    """Initial contents of one map, written by fw-load before the program is attached, as its
    artifact section holds them (docs/artifact.md, "Seeds"): (key, value) records, or for an
    array whose keys are 0 .. count-1 its image, each value at a stride of 8-byte words."""

    map: str
    key_size: int
    value_size: int
    data: bytes
    layout: str = RECORDS  # or IMAGE, then key_size is IMAGE_KEY_SIZE

    @property
    def count(self) -> int:
        if self.layout == IMAGE:
            return len(self.data) // image_stride(self.value_size)
        return len(self.data) // (self.key_size + self.value_size)

    @property
    def records(self) -> bytes:
        """The seed as (key, value) records, whatever its layout."""
        if self.layout == IMAGE:
            return image_records(self.data, self.value_size)
        return self.data

    @property
    def section(self) -> str:
        return f".fwc.seed.{self.map}"


@dataclass(frozen=True)
class Plan:
    """Everything the renderer and the build need; produced once by one strategy."""

    policy: Policy
    strategy: str  # "constants" or "tables"
    program: ConstantsProgram | TablesProgram  # what the template reads
    maps: tuple[MapInfo, ...]
    seeds: tuple[Seed, ...] = ()
    dry_run: bool = False
    log_rate: int = 0
    counter_slots: tuple[str, ...] = field(default=())  # slot index -> name, see docs/artifact.md
    interfaces: InterfaceClasses = NO_INTERFACES  # the classes fwc_ifaces maps ifindexes to
    sets: tuple[SetEntry, ...] = ()  # tables strategy: what live changes of each set need

    @property
    def template(self) -> str:
        return self.program.template

    @property
    def program_name(self) -> str:
        return self.program.program_name


STRATEGIES = ("constants", "tables")
# The registry: each strategy is planned by one module, imported when first used (the
# modules import this one for the plan's types).
STRATEGY_MODULES = {
    "constants": "fwc.compiler.backend.constants",
    "tables": "fwc.compiler.backend.tables.plan",
}
# BPF_OBJ_NAME_LEN - 1: the kernel keeps this much of a program's name.
PROGRAM_NAME_LEN = 15
_NOT_IN_NAME = re.compile(r"[^a-z0-9_]+")


_IDENTIFIER = re.compile(r"\bfwc_\w+")
DEFAULT_PROGRAM_NAME = "fwc_xdp"


def program_name(policy: Policy) -> str:
    """The XDP function's name: `fwc_` and a sanitised prefix of the policy's name, which
    the kernel shows in `bpftool prog`; `fwc_xdp` when that leaves nothing of the name or
    would clash with a name the templates define (a policy called `counters`)."""
    stem = _NOT_IN_NAME.sub("_", policy.name.lower()).strip("_")
    name = ("fwc_" + stem)[:PROGRAM_NAME_LEN].rstrip("_")
    return name if stem and name not in template_names() else DEFAULT_PROGRAM_NAME


@cache
def template_names() -> frozenset[str]:
    """Every `fwc_` identifier in templates/bpf: maps, helpers, types and macros."""
    folder = Path(__file__).parents[2] / "templates" / "bpf"
    return frozenset(
        m.group(0).lower()
        for path in sorted(folder.iterdir())
        if path.suffix in (".h", ".j2")
        for m in _IDENTIFIER.finditer(path.read_text())
    )


class PlanError(Exception):
    """The policy cannot be planned with the chosen strategy; `findings` say why."""

    def __init__(self, findings: list[Finding]) -> None:
        super().__init__(findings[0].message if findings else "the policy cannot be planned")
        self.findings = findings


def interface_maps() -> list[MapInfo]:
    """fwc_ifaces.h's maps: the array of low ifindexes, the hash of the others."""
    return [
        MapInfo(IFACES_MAP, "array", IFACE_KEY.size, IFACE_VALUE.size, IFACES_ENTRIES),
        MapInfo(IFACES_HASH_MAP, "hash", IFACE_KEY.size, IFACE_VALUE.size, IFACES_HASH_ENTRIES),
    ]


def planned_interfaces(policy: Policy) -> InterfaceClasses:
    """The policy's interface classes; PlanError (FWC051) when a program cannot hold them."""
    try:
        return program_classes(policy)
    except TooManyInterfaceClasses as exc:
        raise PlanError([error("FWC051", str(exc), Location(policy.source_file))]) from None


SPECIAL_SLOTS = ("default", "malformed", "non_ip", "would_drop")
# a rate_limit rule's packets that found a token (passed) and that found none (dropped)
RATE_LIMIT_SLOTS = ("rate_limit_pass", "rate_limit_drop")


def counter_slots(policy: Policy) -> tuple[str, ...]:
    """Slot index -> name: one per rule, then default, malformed, non_ip, would_drop, then a
    pass and a drop slot per rate_limit rule."""
    rules = tuple(f"rule:{r.name}" for r in policy.rules)
    limited = tuple(
        f"{kind}:{r.name}"
        for r in policy.rules
        if r.action is Action.RATE_LIMIT
        for kind in RATE_LIMIT_SLOTS
    )
    return (*rules, *SPECIAL_SLOTS, *limited)


def rate_limit_slots(policy: Policy) -> dict[int, int]:
    """Rule id -> its rate_limit_pass slot (rate_limit_drop is the next one)."""
    first = len(policy.rules) + len(SPECIAL_SLOTS)
    limited = [r.id for r in policy.rules if r.action is Action.RATE_LIMIT]
    return {rule: first + len(RATE_LIMIT_SLOTS) * i for i, rule in enumerate(limited)}


def special_slots(policy: Policy) -> dict[str, int]:
    """The index of each slot that is not a rule's, by name (see counter_slots)."""
    return {name: len(policy.rules) + i for i, name in enumerate(SPECIAL_SLOTS)}


def strategy_module(strategy: str) -> ModuleType | None:
    """The module that plans `strategy`, or None when this version of fwc has none.

    A strategy module provides `plan(policy, dry_run, options) -> Plan`, which raises
    PlanError with the reasons when it cannot compile the policy.
    """
    if strategy not in STRATEGIES:
        return None
    name = STRATEGY_MODULES[strategy]
    if importlib.util.find_spec(name) is None:
        return None
    return importlib.import_module(name)


# Measured side by side on 2026-12-06 (bench/bench_tables.py --sizes 32,48,64,96, two runs;
# bench/results.md): a constants program costs the parse plus about 0.7 ns for every rule a
# packet walks past, a tables program a flat 62-76 ns whatever the policy's size. A packet
# that matches no rule, the one a default-deny edge drops, walks every rule: it costs the
# constants program 1.2x the tables program at 64 rules. The bench's mix of early, late and
# unmatched packets still costs it 0.9x there, and both lose to tables from about 80 rules.
TABLES_FROM_RULES = 64


def preferred_strategies(policy: Policy) -> list[str]:
    """The order "auto" tries the strategies in: the faster one for this policy's size first."""
    preferred = ["constants", "tables"]
    if len(policy.rules) >= TABLES_FROM_RULES:
        preferred.reverse()
    return preferred


def choose_strategy(policy: Policy, requested: str) -> str:
    """The strategy to use: `requested`, or for "auto" the faster one for this policy's
    size, unless it refuses the policy and the other one does not."""
    if requested != "auto":
        return requested
    preferred = preferred_strategies(policy)
    for strategy in preferred:
        if not any(f.severity is Severity.ERROR for f in plan_findings(policy, strategy)):
            return strategy
    return preferred[0]


def plan_findings(policy: Policy, strategy: str) -> list[Finding]:
    """Why `strategy` cannot compile `policy`: empty when it can."""
    try:
        _plan_with(policy, strategy, False, DEFAULT_OPTIONS)
    except PlanError as exc:
        return exc.findings
    return []


def make_plan(
    policy: Policy, strategy: str, dry_run: bool, options: CompileOptions = DEFAULT_OPTIONS
) -> Plan:
    """The plan of `policy` with `strategy` ("auto" chooses); raises PlanError when refused.

    Each strategy tried is planned once: "auto" keeps the first plan that succeeds.
    `options` (rate-limit buckets, log rate) go to every strategy; one that compiles no
    rate limits or logs has nothing to read in them.
    """
    if strategy != "auto":
        return _plan_with(policy, strategy, dry_run, options)
    refusals: list[PlanError] = []
    for candidate in preferred_strategies(policy):
        try:
            return _plan_with(policy, candidate, dry_run, options)
        except PlanError as exc:
            refusals.append(exc)
    raise refusals[0]


def _plan_with(policy: Policy, strategy: str, dry_run: bool, options: CompileOptions) -> Plan:
    module = strategy_module(strategy)
    if module is None:
        raise PlanError(
            [
                error(
                    "FWC050",
                    f"the {strategy!r} strategy is not available in this version of fwc",
                    Location(policy.source_file),
                )
            ]
        )
    result: Plan = module.plan(policy, dry_run, options)
    return result
