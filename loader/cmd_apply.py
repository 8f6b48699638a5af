"""`fw-load apply ARTIFACT`: load, check, and attach atomically to the selected interfaces."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from fwc.loader import pins
from fwc.loader.apply import ApplyOptions, ApplyReport, LockoutRefused, apply
from fwc.loader.libbpf import KernelError


def add_common_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags shared by `apply` and `run`."""
    parser.add_argument("artifact", type=Path, help="the artifact written by `fwc compile`")
    parser.add_argument("--expect-hash", metavar="SHA256", help="refuse another policy hash")
    parser.add_argument(
        "--keep-access",
        metavar="ADDR:PORT",
        action="append",
        default=[],
        help="a client address and local port that must stay reachable (repeatable)",
    )
    parser.add_argument(
        "--force", action="store_true", help="attach even if the management session is dropped"
    )
    parser.add_argument("--offload", action="store_true", help="ask for hardware offload")
    parser.add_argument(
        "--replace-foreign",
        action="store_true",
        help="replace an XDP program that fw-load did not attach",
    )
    parser.add_argument(
        "--dry-run",
        action="store_true",
        help="require a dry-run artifact (nothing dropped, would-drop counted)",
    )
    parser.add_argument("--pin-root", help=f"bpffs directory (default {pins.DEFAULT_ROOT})")
    parser.add_argument(
        "--no-live-update",
        action="store_true",
        help="always load and swap the program, even when the tables could be updated in place",
    )


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_common_arguments(parser)
    parser.add_argument("--json", action="store_true", help="print the report as JSON")


def options(args: argparse.Namespace, **extra: bool) -> ApplyOptions:
    return ApplyOptions(
        artifact=args.artifact,
        root=pins.pin_root(args.pin_root),
        expect_hash=args.expect_hash,
        force=args.force,
        keep_access=tuple(args.keep_access),
        ssh_connection=os.environ.get("SSH_CONNECTION"),
        offload=args.offload,
        replace_foreign=args.replace_foreign,
        dry_run=args.dry_run,
        live_update=not args.no_live_update,
        **extra,
    )


def render(report: ApplyReport) -> str:
    dry = " (dry-run: nothing is dropped)" if report.dry_run else ""
    lines = [f"policy {report.policy} sha256 {report.sha256} prog id {report.prog_id}{dry}"]
    lines.append(f"  {report.describe_path()}")
    for item in report.interfaces:
        mode = f" ({item.mode})" if item.mode else ""
        lines.append(f"  {item.name}: {item.action}{mode}")
    for session in report.lockout_checked:
        lines.append(f"  lockout check: {session}")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    try:
        report = apply(options(args))
    except LockoutRefused as exc:
        print(f"fw-load apply: {exc}", file=sys.stderr)
        return 1
    except KernelError as exc:
        if exc.log:
            print(exc.log.rstrip(), file=sys.stderr)
        raise
    print(json.dumps(report.as_dict(), indent=2) if args.json else render(report))
    return 0
