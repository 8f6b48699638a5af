"""`fwc schema`: prints the policy JSON Schema (draft 2020-12), for editors and other tools."""

from __future__ import annotations

import argparse
import sys

from fwc.compiler.policy.schema import schema_text


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--output", "-o", metavar="FILE", help="write the schema to FILE")


def run(args: argparse.Namespace) -> int:
    text = schema_text()
    if args.output:
        with open(args.output, "w", encoding="utf-8") as f:
            f.write(text)
    else:
        sys.stdout.write(text)
    return 0
