"""`fw-load run` (not built yet)."""

from __future__ import annotations

import argparse

from fwc.loader.cli import LoaderError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("args", nargs="*")


def run(args: argparse.Namespace) -> int:
    raise LoaderError("not built yet")
