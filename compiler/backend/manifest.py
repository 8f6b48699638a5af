"""The artifact's manifest (docs/artifact.md): built from the plan, embedded with llvm-objcopy."""

from __future__ import annotations

import io
import json
import struct
from typing import Any

from elftools.elf.elffile import ELFFile

from fwc import __version__
from fwc.compiler.backend.plan import Plan, Seed

FORMAT = 2
SECTION = ".fwc.manifest"
PROGRAM = "fwc_xdp"
PROGRAM_SECTION = "xdp"
BPF_INSN_SIZE = 8
BUCKETS_MAP = "fwc_buckets"
EVENTS_MAP = "fwc_events"
# an array seed in the "image" layout: u32 keys 0 .. count-1, implied
IMAGE_KEY_SIZE = 4


def build_manifest(plan: Plan, clang_version: str, insn_count: int) -> dict[str, Any]:
    policy = plan.policy
    return {
        "format": FORMAT,
        "policy": {
            "name": policy.name,
            "sha256": policy.source_sha256,
            "default_action": policy.default_action.value,
            "interfaces": {
                "include": list(policy.interfaces.include),
                "exclude": list(policy.interfaces.exclude),
            },
        },
        "compiler": {"name": "fwc", "version": __version__, "clang": clang_version},
        "strategy": plan.strategy,
        "dry_run": plan.dry_run,
        "log_rate": plan.log_rate,
        "rate_limit_buckets": next((m.max_entries for m in plan.maps if m.name == BUCKETS_MAP), 0),
        "program": {
            "name": plan.program_name,
            "section": PROGRAM_SECTION,
            "insn_count": insn_count,
        },
        # the two long tables as columns (docs/artifact.md): a live update decodes them
        # several times faster than one object per row
        "rules": {
            "id": [r.id for r in policy.rules],
            "name": [r.name for r in policy.rules],
            "priority": [r.priority for r in policy.rules],
            "action": [r.action.value for r in policy.rules],
        },
        "counters": {
            "map": "fwc_counters",
            "slots": {
                "index": list(range(len(plan.counter_slots))),
                "name": list(plan.counter_slots),
            },
        },
        "maps": [
            {
                "name": m.name,
                "type": m.type,
                "key_size": m.key_size,
                "value_size": m.value_size,
                "max_entries": m.max_entries,
            }
            for m in plan.maps
        ],
        "seeds": [
            {
                "map": s.map,
                "section": s.section,
                "key_size": s.key_size,
                "value_size": s.value_size,
                "count": s.count,
                "layout": seed_layout(s, plan),
            }
            for s in plan.seeds
        ],
    }


def seed_layout(seed: Seed, plan: Plan) -> str:
    """ "image" for an array seed whose keys are 0 .. count-1 (the section then holds the
    values as the kernel lays out the array: each padded to 8 bytes), else "records"."""
    kinds = {m.name: m.type for m in plan.maps}
    if kinds.get(seed.map) != "array" or seed.key_size != IMAGE_KEY_SIZE:
        return "records"
    step = seed.key_size + seed.value_size
    keys = struct.pack(f"<{seed.count}I", *range(seed.count))
    # byte lane by byte lane: strided slices, not a Python loop per record
    dense = all(seed.records[b::step] == keys[b::IMAGE_KEY_SIZE] for b in range(IMAGE_KEY_SIZE))
    return "image" if dense else "records"


def seed_section(seed: Seed, layout: str) -> bytes:
    """The bytes of the seed's section in `layout`."""
    if layout == "records":
        return seed.records
    stride = (seed.value_size + 7) // 8 * 8
    step = seed.key_size + seed.value_size
    out = bytearray(seed.count * stride)
    for b in range(seed.value_size):
        out[b::stride] = seed.records[seed.key_size + b :: step]
    return bytes(out)


def encode(manifest: dict[str, Any]) -> bytes:
    """The canonical bytes: sorted keys, no optional whitespace, UTF-8."""
    return json.dumps(manifest, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def insn_count(elf: bytes) -> int:
    """Instructions in the program's section, from its size (BPF instructions are 8 bytes)."""
    section = ELFFile(io.BytesIO(elf)).get_section_by_name(PROGRAM_SECTION)
    if section is None:
        return 0
    size: int = section["sh_size"]
    return size // BPF_INSN_SIZE
