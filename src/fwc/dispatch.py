"""Subcommand dispatch shared by `fwc` and `fw-load`: each command is a module, imported on use."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Mapping, Sequence
from typing import Protocol

from fwc import __version__
from fwc.exits import (
    GuardedStdout,
    OutputError,
    flush_stdout,
    guard_standard_fds,
    output_lost,
    reader_gone,
)
from fwc.terminal import escape


class Command(Protocol):
    """A subcommand module: declares its arguments and runs with them."""

    def add_arguments(self, parser: argparse.ArgumentParser) -> None: ...

    def run(self, args: argparse.Namespace) -> int: ...


def dispatch(
    prog: str,
    description: str,
    package: str,
    commands: Mapping[str, tuple[str, str]],
    user_errors: tuple[type[Exception], ...],
    argv: Sequence[str] | None,
) -> int:
    """Parse `argv` and run one command; `commands` maps name -> (module, one-line help).

    Only the chosen command's module is imported: start-up time matters for a
    loader that runs on every node and for a gate that runs on every commit.
    """
    stdout_open = guard_standard_fds()
    try:
        parsed = _parse(prog, description, package, commands, argv)
    except KeyboardInterrupt:
        # while the command's module is still importing: 130 too, never a traceback
        return 130
    if parsed is None:
        return 2
    module, args = parsed
    real_stdout = sys.stdout
    try:
        # a command that reports on stdout refuses to run unheard; the daemon logs to stderr
        if not stdout_open and getattr(module, "REPORTS_ON_STDOUT", True):
            raise OutputError("stdout is closed; nothing can be reported")
        sys.stdout = GuardedStdout(real_stdout)
        code = module.run(args)
        flush_stdout()
        return code
    except OutputError as exc:
        return output_lost(prog, args.command, exc)
    except user_errors as exc:
        print(f"{prog} {args.command}: {escape(str(exc))}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return reader_gone()
    finally:
        sys.stdout = real_stdout


def _parse(
    prog: str,
    description: str,
    package: str,
    commands: Mapping[str, tuple[str, str]],
    argv: Sequence[str] | None,
) -> tuple[Command, argparse.Namespace] | None:
    """The chosen command's module and its arguments; None (after printing the help)
    when no command was chosen."""
    argv = list(sys.argv[1:] if argv is None else argv)
    chosen = next((a for a in argv if not a.startswith("-")), None)
    parser = argparse.ArgumentParser(prog=prog, description=description)
    parser.add_argument("--version", action="version", version=f"{prog} {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    module: Command | None = None
    for name, (module_name, help_text) in commands.items():
        sub_parser = sub.add_parser(name, help=help_text, description=help_text)
        if name == chosen:
            module = importlib.import_module(f"{package}.{module_name}")
            module.add_arguments(sub_parser)
    args = parser.parse_args(argv)
    if args.command is None or module is None:
        parser.print_help(sys.stderr)
        return None
    return module, args
