"""`fw-load detach [--all | IFACE...] [--policy NAME]`: remove attachments and their pins."""

from __future__ import annotations

import argparse
import sys

from fwc.loader.apply import recovery
from fwc.loader.apply.transaction import check_privileges
from fwc.loader.errors import LoaderError
from fwc.loader.node import attach, pins
from fwc.loader.node.bpffs import require_bpffs


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("interfaces", nargs="*", metavar="IFACE")
    parser.add_argument("--all", action="store_true", help="every interface fw-load attached")
    parser.add_argument("--policy", metavar="NAME", help="only this policy's attachments")
    parser.add_argument("--pin-root", help=f"bpffs directory (default {pins.DEFAULT_ROOT})")


def run(args: argparse.Namespace) -> int:
    if args.all == bool(args.interfaces):
        raise LoaderError("name the interfaces to detach, or pass --all (not both)")
    if args.policy is not None:
        pins.checked_name(args.policy)
    check_privileges()
    root = pins.pin_root(args.pin_root)
    require_bpffs(root)
    names = None if args.all else set(args.interfaces)
    done: list[tuple[str, str]] = []
    # No pin root means fw-load never attached anything here: do not create one.
    if root.is_dir():
        with pins.locked(root):
            for change in recovery.recover(root):
                print(f"recovered: {change}", file=sys.stderr)
            done = attach.release(root, names, args.policy)
    missing = sorted((names or set()) - {name for _, name in done})
    for policy, name in done:
        print(f"{name}: detached policy {policy}")
    if missing:
        raise LoaderError(f"no fwc program attached on {', '.join(missing)}")
    if not done:
        print("nothing attached")
    return 0
