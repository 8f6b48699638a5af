"""`fw-load apply`'s whole run as a value: the apply, its report (text or JSON) and exit code.

The command runs it in its own process; `fw-load run` runs the very same function for a
request that came through its control socket.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fwc.loader.apply.manifest_cache import ManifestCache
from fwc.loader.apply.transaction import ApplyOptions, ApplyReport, LockoutRefused, apply
from fwc.loader.errors import LoaderError
from fwc.loader.kernel.libbpf import KernelError
from fwc.loader.node import pins
from fwc.terminal import escape_lines


@dataclass(frozen=True)
class Outcome:
    """What the command prints and returns."""

    code: int
    stdout: str
    stderr: str
    report: ApplyReport | None = None

    def as_reply(self) -> dict[str, Any]:
        return {"code": self.code, "stdout": self.stdout, "stderr": self.stderr}


def options(
    fields: Mapping[str, Any],
    root: str | Path,
    ssh_connection: str | None,
    manifests: ManifestCache | None = None,
    **extra: Any,
) -> ApplyOptions:
    """ApplyOptions from the command's options (the control request's FIELDS); the SSH session
    is the command's own."""
    return ApplyOptions(
        artifact=Path(fields["artifact"]),
        root=pins.pin_root(root),
        expect_hash=fields["expect_hash"],
        force=bool(fields["force"]),
        keep_access=tuple(fields["keep_access"]),
        ssh_connection=ssh_connection,
        offload=bool(fields["offload"]),
        replace_foreign=bool(fields["replace_foreign"]),
        dry_run=bool(fields["dry_run"]),
        live_update=not fields["no_live_update"],
        manifests=manifests,
        **extra,
    )


def render(report: ApplyReport) -> str:
    dry = " (dry-run: nothing is dropped)" if report.dry_run else ""
    lines = [
        f"policy {report.policy} artifact sha256 {report.sha256} prog id {report.prog_id}{dry}"
    ]
    lines.append(f"  {report.describe_path()}")
    for item in report.interfaces:
        mode = f" ({item.mode})" if item.mode else ""
        lines.append(f"  {item.name}: {item.action}{mode}")
    for session in report.lockout_checked:
        lines.append(f"  lockout check: {session}")
    if report.source_sha256:
        lines.append(f"  source sha256 {report.source_sha256}")
    if report.conntrack:
        lines.append(f"  conntrack: {report.conntrack}")
    for change in report.recovered:
        lines.append(f"  recovered first: {change}")
    return escape_lines("\n".join(lines))


def execute(opts: ApplyOptions, as_json: bool) -> Outcome:
    """Apply, and say it as `fw-load apply` does: exit 0, 1 (lockout) or 2 (any other error)."""
    try:
        report = apply(opts)
    except LockoutRefused as exc:
        return Outcome(1, "", f"fw-load apply: {exc}\n")
    except KernelError as exc:
        log = exc.log.rstrip() + "\n" if exc.log else ""
        return Outcome(2, "", f"{log}fw-load apply: {exc}\n")
    except LoaderError as exc:
        return Outcome(2, "", f"fw-load apply: {exc}\n")
    text = json.dumps(report.as_dict(), indent=2) if as_json else render(report)
    return Outcome(0, text + "\n", "", report)
