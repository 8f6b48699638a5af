"""`fwc test` (not built yet)."""

from __future__ import annotations

import argparse

from fwc.compiler.cli import ToolError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("args", nargs="*")


def run(args: argparse.Namespace) -> int:
    raise ToolError("not built yet")
