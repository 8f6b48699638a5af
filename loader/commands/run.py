"""`fw-load run ARTIFACT` or `fw-load run --watch PATH`: the daemon (apply, then follow
interfaces; metrics and probes; control socket)."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from fwc.loader.apply import report as apply_report
from fwc.loader.apply.transaction import LockoutRefused
from fwc.loader.commands.apply import add_common_arguments
from fwc.loader.daemon import control, listener
from fwc.loader.daemon import loop as daemon
from fwc.loader.errors import LoaderError

# the daemon logs to stderr: it runs with stdout closed too (fwc.dispatch)
REPORTS_ON_STDOUT = False


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_common_arguments(parser, artifact_optional=True)
    parser.add_argument(
        "--watch",
        metavar="PATH",
        help="follow the artifact at PATH (a ConfigMap volume's file, say) and apply each new "
        "one whose sha256 matches PATH.sha256 beside it; refuse and report any other",
    )
    parser.add_argument(
        "--metrics-addr",
        metavar="HOST:PORT",
        default="127.0.0.1:9469",
        help="serve Prometheus /metrics, /healthz, /readyz and /status here "
        "(default 127.0.0.1:9469; 'off' to disable)",
    )
    parser.add_argument(
        "--detach-on-exit",
        action="store_true",
        help="detach on SIGTERM/SIGINT (default: leave the program attached, fail-closed)",
    )


def run(args: argparse.Namespace) -> int:
    if (args.artifact is None) == (args.watch is None):
        raise LoaderError("give the artifact or --watch PATH (one of them)")
    metrics_addr = None if args.metrics_addr == "off" else args.metrics_addr
    if metrics_addr is not None:
        listener.parse_addr(metrics_addr)  # a typo fails here, before anything is applied
    watched = Path(os.path.abspath(args.watch)) if args.watch else None
    if watched is not None:
        args.artifact = str(watched)
    root = control.pin_root(args.pin_root)
    opts = daemon.DaemonOptions(
        apply=apply_report.options(vars(args), root, os.environ.get("SSH_CONNECTION")),
        metrics_addr=metrics_addr,
        detach_on_exit=args.detach_on_exit,
        watch=watched,
    )
    try:
        return daemon.run(opts)
    except LockoutRefused as exc:
        print(f"fw-load run: {exc}", file=sys.stderr)
        return 1
