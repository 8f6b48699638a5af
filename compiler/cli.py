"""The `fwc` command line: one subcommand per module, each with `add_arguments` and `run`."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence
from typing import Protocol

from fwc import __version__

# subcommand -> (module under fwc.compiler, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "check": ("cmd_check", "gate policies: schema, semantics and Rego invariants"),
    "schema": ("cmd_schema", "print the policy JSON Schema"),
    "compile": ("cmd_compile", "compile a policy to an XDP artifact"),
    "test": ("cmd_test", "run packet cases against a policy"),
    "explain": ("cmd_explain", "explain the verdict for one packet"),
}


class Command(Protocol):
    def add_arguments(self, parser: argparse.ArgumentParser) -> None: ...

    def run(self, args: argparse.Namespace) -> int: ...


class UsageError(Exception):
    """A user's mistake in flags or files: exit 2 with one clear line."""


class ToolError(Exception):
    """The tool or its environment failed (clang missing, kernel refused): exit 2."""


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="fwc", description="Policy-as-code XDP firewall.")
    parser.add_argument("--version", action="version", version=f"fwc {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    modules: dict[str, Command] = {}
    for name, (module, help_text) in COMMANDS.items():
        mod: Command = importlib.import_module(f"fwc.compiler.{module}")
        modules[name] = mod
        mod.add_arguments(sub.add_parser(name, help=help_text, description=help_text))
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help(sys.stderr)
        return 2
    try:
        return modules[args.command].run(args)
    except (UsageError, ToolError) as exc:
        print(f"fwc {args.command}: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return 1


if __name__ == "__main__":
    sys.exit(main())
