"""`fw-load apply ARTIFACT`: load, check, and attach atomically to the selected interfaces.

When `fw-load run` serves the same pin root, the request goes through its control socket and
the daemon, warm, does the apply; this module imports the apply path only when it applies here.
"""

from __future__ import annotations

import argparse
import os
import sys

from fwc.loader.daemon import control, fast_apply


def add_common_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags shared by `apply` and `run`."""
    parser.add_argument("artifact", help="the artifact written by `fwc compile`")
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
    parser.add_argument("--pin-root", help=f"bpffs directory (default {control.DEFAULT_ROOT})")
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


def request(args: argparse.Namespace, root: str) -> dict[str, object]:
    """The control request for these arguments (fast_apply.apply_request)."""
    options = {name: getattr(args, name) for name in fast_apply.FIELDS}
    return fast_apply.apply_request(options, root, args.json)


def run(args: argparse.Namespace) -> int:
    root = control.pin_root(args.pin_root)
    if not args.no_daemon:
        reply = control.ask(root, request(args, root))
        if reply is not None:
            return fast_apply.said(reply)
    # imported here: the apply path costs more to import than the whole daemon route
    from fwc.loader.apply import report as control_apply

    outcome = control_apply.execute(
        control_apply.options(vars(args), root, os.environ.get("SSH_CONNECTION")), args.json
    )
    sys.stdout.write(outcome.stdout)
    sys.stderr.write(outcome.stderr)
    return outcome.code
