"""Build loader test artifacts from the C fixtures: clang, then a manifest via llvm-objcopy."""

from __future__ import annotations

import copy
import functools
import json
import subprocess
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from fwc.artifact import claims, codec

FIXTURES = Path(__file__).resolve().parent / "fixtures"
CLANG = "/usr/bin/clang-22"
OBJCOPY = "/usr/bin/llvm-objcopy-22"
ACTION_SEED = (0).to_bytes(4, "little") + (2).to_bytes(4, "little")  # fwc_action[0] = XDP_PASS

BASE_MANIFEST: dict[str, Any] = {
    "format": 2,
    "policy": {
        "name": "fixture",
        "sha256": "ab" * 32,
        "default_action": "allow",
        "interfaces": {"include": ["*"], "exclude": []},
    },
    "compiler": {"name": "fwc", "version": "0.1.0", "clang": "22"},
    "strategy": "tables",
    "dry_run": False,
    "log_rate": 0,
    "program": {"name": "fwc_xdp", "section": "xdp", "insn_count": 0},
    "rules": {"id": [0], "name": ["count_all"], "priority": [1], "action": ["allow"]},
    "counters": {
        "map": "fwc_counters",
        "slots": {"index": [0, 1], "name": ["rule:count_all", "default"]},
    },
    "maps": [
        {
            "name": "fwc_counters",
            "type": "percpu_array",
            "key_size": 4,
            "value_size": 16,
            "max_entries": 2,
        },
        {"name": "fwc_action", "type": "array", "key_size": 4, "value_size": 4, "max_entries": 1},
    ],
    "seeds": [
        {
            "map": "fwc_action",
            "section": ".fwc.seed.fwc_action",
            "key_size": 4,
            "value_size": 4,
            "count": 1,
        }
    ],
}


@functools.cache
def compiled(source: str) -> bytes:
    """The clang output for one fixture C file (compiled once per test session)."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "fixture.o"
        subprocess.run(
            [
                CLANG,
                "-O2",
                "-g",
                "-target",
                "bpf",
                "-I/usr/include/x86_64-linux-gnu",
                "-c",
                str(FIXTURES / source),
                "-o",
                str(out),
            ],
            check=True,
        )
        return out.read_bytes()


def insn_count(obj: bytes) -> int:
    from io import BytesIO

    from elftools.elf.elffile import ELFFile

    elf = ELFFile(BytesIO(obj))
    text = elf.get_section_by_name(".text")
    return (elf.get_section_by_name("xdp").data_size + (text.data_size if text else 0)) // 8


def build(
    tmp: Path,
    *,
    source: str = "xdp_pass_count.c",
    edit: Callable[[dict[str, Any]], None] | None = None,
    manifest: bytes | None = None,
    sections: dict[str, bytes | None] | None = None,
    name: str = "fw.o",
    claims_of_manifest: bool = True,
) -> Path:
    """An artifact in `tmp`: the fixture program, its manifest (edited) and seed sections.

    The program carries the claims digest of the manifest it is built with (when that
    manifest decodes), unless `claims_of_manifest` is false: then it keeps zeros."""
    obj = compiled(source)
    raw = tmp / f"{name}.raw"
    raw.write_bytes(obj)
    if manifest is None:
        doc = copy.deepcopy(BASE_MANIFEST)
        doc["program"]["insn_count"] = insn_count(obj)
        if edit is not None:
            edit(doc)
        manifest = json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()
    extra: dict[str, bytes | None] = {
        ".fwc.manifest": manifest,
        ".fwc.seed.fwc_action": ACTION_SEED,
    }
    extra.update(sections or {})
    if claims_of_manifest:
        raw.write_bytes(_with_claims(obj, manifest, extra))
    args = [OBJCOPY]
    for index, (section, content) in enumerate(extra.items()):
        if content is None:
            continue
        blob = tmp / f"{name}.section{index}"
        blob.write_bytes(content)
        args += [
            f"--add-section={section}={blob}",
            f"--set-section-flags={section}=noload,readonly",
        ]
    out = tmp / name
    subprocess.run([*args, str(raw), str(out)], check=True)
    return out


def _with_claims(obj: bytes, manifest: bytes, sections: dict[str, bytes | None]) -> bytes:
    """`obj` with the claims digest of `manifest` and the seed `sections` written in."""
    try:
        decoded = codec.decode(manifest)
    except codec.ManifestError:
        return obj
    seeds: dict[str, bytes | memoryview] = {}
    for seed in decoded.seeds:
        data = sections.get(seed.section)
        if data is None:
            return obj
        seeds[seed.section] = data
    return claims.write(obj, claims.digest(decoded, seeds))
