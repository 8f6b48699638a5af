"""`fw-load apply ARTIFACT`: load, check, and attach atomically to the selected interfaces.

When `fw-load run` serves the same pin root, the request goes through its control socket and
the daemon, warm, does the apply; otherwise (or with --no-daemon) this process applies.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from typing import Any

from fwc.loader.apply import report
from fwc.loader.apply.report import Outcome
from fwc.loader.daemon import control
from fwc.loader.node import pins


def add_common_arguments(parser: argparse.ArgumentParser, artifact_optional: bool = False) -> None:
    """Flags shared by `apply` and `run` (whose artifact may come from --watch instead)."""
    parser.add_argument(
        "artifact",
        nargs="?" if artifact_optional else None,
        help="the artifact written by `fwc compile`",
    )
    parser.add_argument(
        "--expect-hash", metavar="SHA256", help="refuse unless the artifact file has this sha256"
    )
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
    parser.add_argument(
        "--no-daemon",
        action="store_true",
        help="apply in this process even when `fw-load run` serves the pin root",
    )


def run(args: argparse.Namespace) -> int:
    root = control.pin_root(args.pin_root)
    request = None if args.no_daemon else control.apply_request(vars(args), root, args.json)
    return routed(
        root,
        request,
        lambda: report.execute(
            report.options(vars(args), root, os.environ.get("SSH_CONNECTION")), args.json
        ),
    )


def routed(root: str, request: dict[str, Any] | None, local: Callable[[], Outcome]) -> int:
    """`request` answered by the daemon that serves `root`, or, when there is no request or
    no daemon, `local()` run in this process; printed as the command's own output, its exit
    code."""
    if request is not None:
        reply = control.ask(root, request)
        if reply is not None:
            return said(reply)
    outcome = local()
    sys.stdout.write(outcome.stdout)
    sys.stderr.write(outcome.stderr)
    return outcome.code


def said(reply: dict[str, Any]) -> int:
    """Print the daemon's reply as the command's own output; its exit code."""
    sys.stdout.write(str(reply.get("stdout", "")))
    sys.stderr.write(str(reply.get("stderr", "")))
    code = reply.get("code")
    return code if isinstance(code, int) else 2
