"""`fw-load inspect`: what an artifact holds, read from the ELF alone (no kernel, no privileges)."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from fwc.loader.reader.artifact import ArtifactSpec, read_artifact
from fwc.terminal import escape_lines


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("artifact", help="the compiled artifact (fw.o)")
    parser.add_argument("--json", action="store_true", help="print one JSON document")


def run(args: argparse.Namespace) -> int:
    spec = read_artifact(args.artifact)
    if args.json:
        print(json.dumps(summary(spec), indent=2, sort_keys=True))
    else:
        sys.stdout.write(render_text(spec))
    return 0


def summary(spec: ArtifactSpec) -> dict[str, Any]:
    """The JSON view: facts read from the ELF, then the manifest as embedded."""
    return {
        "artifact": {
            "path": spec.path,
            "size": len(spec.data),
            "sha256": spec.sha256,
            "program": spec.program,
            "section": spec.section,
            "insn_count": spec.insn_count,
            "license": spec.license,
        },
        "manifest": json.loads(spec.manifest_bytes),
    }


def render_text(spec: ArtifactSpec) -> str:
    m = spec.manifest
    compiler = m.compiler
    lines = [
        f"artifact  {spec.path} ({len(spec.data)} bytes, sha256 {spec.sha256})",
        f"policy    {spec.policy_name}  source sha256 {spec.source_sha256}",
        f"compiler  {compiler.name or 'fwc'} {compiler.version}"
        + (f" (clang {compiler.clang})" if compiler.clang else ""),
        f"strategy  {m.strategy}  dry-run {'yes' if m.dry_run else 'no'}  log-rate {m.log_rate}"
        + (
            "  conntrack yes (fw-load makes this namespace track connections)"
            if m.conntrack
            else ""
        ),
        f"program   {spec.program}  section {spec.section}  {spec.insn_count} instructions  "
        f"license {spec.license}",
        "",
        f"maps ({len(spec.maps)})",
        _table(
            ["name", "type", "key", "value", "entries"],
            [[x.name, x.type, x.key_size, x.value_size, x.max_entries] for x in spec.maps],
        ),
    ]
    if spec.seeds:
        lines += [
            f"seeds ({len(spec.seeds)})",
            _table(
                ["map", "section", "layout", "entries"],
                [[s.map, s.section, s.layout, s.count] for s in spec.seeds],
            ),
        ]
    lines += [
        f"rules ({len(m.rules.id)})",
        _table(
            ["id", "priority", "action", "name"],
            [[r.id, r.priority, r.action, r.name] for r in m.rules.rows()],
        ),
        f"counters ({spec.counters_map}, {len(spec.counter_slots)} slots)",
        _table(["slot", "name"], [[index, name] for index, name in spec.counter_slots]),
    ]
    # manifest text (rule and slot names, the path) never reaches the terminal raw
    return escape_lines("\n".join(lines) + "\n")


def _table(header: list[str], rows: list[list[Any]]) -> str:
    cells = [header, *[[str(c) for c in row] for row in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    return "\n".join(
        "  "
        + "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in cells
    )
