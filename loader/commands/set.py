"""`fw-load set SET --add FILE --remove FILE`: change the members of an address set of the live
tables policy without a compile (docs/loader.md, "Live set changes").

When `fw-load run` serves the same pin root, the request goes through its control socket and
the daemon, warm, makes the change; otherwise (or with --no-daemon) this process does.
"""

from __future__ import annotations

import argparse

from fwc.loader.apply import set_report
from fwc.loader.commands.apply import routed
from fwc.loader.daemon import control
from fwc.loader.node import pins


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("set", help="the set's name in the policy (without the $)")
    parser.add_argument(
        "--add",
        metavar="FILE",
        action="append",
        default=[],
        help="addresses to add, one address or CIDR a line, # comments (repeatable)",
    )
    parser.add_argument(
        "--remove",
        metavar="FILE",
        action="append",
        default=[],
        help="addresses to remove, in the same format (repeatable)",
    )
    parser.add_argument(
        "--policy", metavar="NAME", help="the applied policy (default: the only one)"
    )
    parser.add_argument("--pin-root", help=f"bpffs directory (default {pins.DEFAULT_ROOT})")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.add_argument(
        "--no-daemon",
        action="store_true",
        help="change the set in this process even when `fw-load run` serves the pin root",
    )


def run(args: argparse.Namespace) -> int:
    root = control.pin_root(args.pin_root)
    fields = vars(args)
    request = None if args.no_daemon else control.set_request(fields, root, args.json)
    return routed(
        root, request, lambda: set_report.execute(set_report.options(fields, root), args.json)
    )
