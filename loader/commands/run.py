"""`fw-load run ARTIFACT`: the daemon (apply, then follow interfaces; metrics; control socket)."""

from __future__ import annotations

import argparse
import os
import sys

from fwc.loader.apply import report as apply_report
from fwc.loader.apply.transaction import LockoutRefused
from fwc.loader.commands.apply import add_common_arguments
from fwc.loader.daemon import control
from fwc.loader.daemon import loop as daemon

# the daemon logs to stderr: it runs with stdout closed too (fwc.dispatch)
REPORTS_ON_STDOUT = False


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_common_arguments(parser)
    parser.add_argument(
        "--metrics-addr",
        metavar="HOST:PORT",
        default="127.0.0.1:9469",
        help="serve Prometheus metrics here (default 127.0.0.1:9469; 'off' to disable)",
    )
    parser.add_argument(
        "--detach-on-exit",
        action="store_true",
        help="detach on SIGTERM/SIGINT (default: leave the program attached, fail-closed)",
    )


def run(args: argparse.Namespace) -> int:
    root = control.pin_root(args.pin_root)
    opts = daemon.DaemonOptions(
        apply=apply_report.options(vars(args), root, os.environ.get("SSH_CONNECTION")),
        metrics_addr=None if args.metrics_addr == "off" else args.metrics_addr,
        detach_on_exit=args.detach_on_exit,
    )
    try:
        return daemon.run(opts)
    except LockoutRefused as exc:
        print(f"fw-load run: {exc}", file=sys.stderr)
        return 1
