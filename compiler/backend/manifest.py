"""The artifact's manifest (docs/artifact.md), built from the plan as the shared typed Manifest."""

from __future__ import annotations

import io

from elftools.elf.elffile import ELFFile

from fwc import __version__
from fwc.artifact.ifclass import InterfaceClassTable
from fwc.artifact.layout import (
    BUCKETS_MAP,
    COUNTERS_MAP,
    FORMAT,
    INSN_SIZE,
    PROGRAM_SECTION,
)
from fwc.artifact.manifest import (
    CompilerInfo,
    Counters,
    Interfaces,
    Manifest,
    MapEntry,
    PolicyInfo,
    ProgramEntry,
    RuleTable,
    SeedEntry,
    SlotTable,
)
from fwc.compiler.backend.plan import Plan


def build_manifest(plan: Plan, clang_version: str, insn_count: int) -> Manifest:
    policy = plan.policy
    rules = policy.rules
    return Manifest(
        format=FORMAT,
        policy=PolicyInfo(
            name=policy.name,
            sha256=policy.source_sha256,
            default_action=policy.default_action.value,
            interfaces=Interfaces(
                tuple(policy.interfaces.include), tuple(policy.interfaces.exclude)
            ),
        ),
        compiler=CompilerInfo(name="fwc", version=__version__, clang=clang_version),
        strategy=plan.strategy,
        dry_run=plan.dry_run,
        log_rate=plan.log_rate,
        rate_limit_buckets=next((m.max_entries for m in plan.maps if m.name == BUCKETS_MAP), 0),
        program=ProgramEntry(plan.program_name, PROGRAM_SECTION, insn_count),
        rules=RuleTable(
            id=tuple(r.id for r in rules),
            name=tuple(r.name for r in rules),
            priority=tuple(r.priority for r in rules),
            action=tuple(r.action.value for r in rules),
        ),
        counters=Counters(
            COUNTERS_MAP,
            SlotTable(tuple(range(len(plan.counter_slots))), tuple(plan.counter_slots)),
        ),
        maps=tuple(
            MapEntry(m.name, m.type, m.key_size, m.value_size, m.max_entries) for m in plan.maps
        ),
        seeds=tuple(
            SeedEntry(s.map, s.section, s.key_size, s.value_size, s.count, s.layout)
            for s in plan.seeds
        ),
        interface_classes=(
            InterfaceClassTable(plan.interfaces.patterns, plan.interfaces.classes)
            if plan.interfaces.used
            else None
        ),
        conntrack=any(r.has_state for r in rules),
        sets=plan.sets,
    )


def insn_count(elf: bytes) -> int:
    """Instructions the program loads with: its section and the BPF functions it calls
    (`.text`, which libbpf appends to it), from their sizes."""
    obj = ELFFile(io.BytesIO(elf))
    size = 0
    for name in (PROGRAM_SECTION, ".text"):
        section = obj.get_section_by_name(name)
        if section is not None:
            size += section["sh_size"]
    return size // INSN_SIZE
