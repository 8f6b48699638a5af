"""The `fw-load` command line: one subcommand per module, each with `add_arguments` and `run`."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence
from typing import Protocol

from fwc import __version__

# subcommand -> (module under fwc.loader, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "inspect": ("cmd_inspect", "show an artifact's manifest, program and maps"),
    "apply": ("cmd_apply", "load an artifact and attach it to the selected interfaces"),
    "run": ("cmd_run", "apply, then follow interfaces as they come and go"),
    "status": ("cmd_status", "show what is attached where"),
    "stats": ("cmd_stats", "show per-rule counters"),
    "detach": ("cmd_detach", "detach programs and remove their pins"),
}


class Command(Protocol):
    def add_arguments(self, parser: argparse.ArgumentParser) -> None: ...

    def run(self, args: argparse.Namespace) -> int: ...


class LoaderError(Exception):
    """Anything that stops fw-load: printed as one line, exit 2."""


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="fw-load", description="Load fwc artifacts onto a node.")
    parser.add_argument("--version", action="version", version=f"fw-load {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    modules: dict[str, Command] = {}
    for name, (module, help_text) in COMMANDS.items():
        mod: Command = importlib.import_module(f"fwc.loader.{module}")
        modules[name] = mod
        mod.add_arguments(sub.add_parser(name, help=help_text, description=help_text))
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help(sys.stderr)
        return 2
    try:
        return modules[args.command].run(args)
    except LoaderError as exc:
        print(f"fw-load {args.command}: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
