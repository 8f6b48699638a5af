"""`fwc check`: the CI gate over policy files and directories, in one of five report formats."""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import time
from pathlib import Path
from typing import Any

from fwc.compiler.analysis.review import Review
from fwc.compiler.check import ANALYSES, CheckOptions, Gate, PathError, check_paths
from fwc.compiler.errors import ToolError, UsageError
from fwc.compiler.policy.findings import Finding
from fwc.compiler.policy.ir import Policy
from fwc.compiler.progress import Progress
from fwc.compiler.reports.formats import FORMATS, render


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("paths", nargs="*", metavar="PATH", help="policy files or directories")
    parser.add_argument("--format", choices=FORMATS, default="text", help="report format")
    parser.add_argument("--output", "-o", metavar="FILE", help="write the report to FILE")
    parser.add_argument(
        "--fail-on-warn", action="store_true", help="exit 1 on warnings too, not only errors"
    )
    parser.add_argument("--no-rego", action="store_true", help="skip the Rego invariants")
    add_rego_arguments(parser)
    parser.add_argument(
        "--rego-tests", action="store_true", help="run the Rego test_ rules, like `opa test`"
    )


def add_rego_arguments(parser: argparse.ArgumentParser) -> None:
    """The Rego gate's flags, shared with `fwc compile` (which runs the same gate)."""
    parser.add_argument(
        "--rego",
        action="append",
        default=[],
        metavar="DIR",
        help="Rego policy directory (repeatable; default: the bundled invariants)",
    )
    parser.add_argument(
        "--data", action="append", default=[], metavar="FILE", help="Rego data document"
    )
    parser.add_argument(
        "--engine", choices=("auto", "regopy", "opa", "server"), default="auto", help="Rego engine"
    )
    parser.add_argument("--opa-url", metavar="URL", help="evaluate on this OPA server")


def run(args: argparse.Namespace) -> int:
    if args.rego_tests:
        return _rego_tests(args)
    if not args.paths:
        raise UsageError("no policy files given (usage: fwc check PATH...)")
    gate = None if args.no_rego else rego_gate(args)
    started = time.monotonic()
    try:
        with Progress("fwc check") as progress:
            options = CheckOptions(gate=gate, analyses=ANALYSES, stage=progress.stage, cases=True)
            result = check_paths(args.paths, options)
    except PathError as exc:
        raise UsageError(str(exc)) from None
    text = render(
        result,
        args.format,
        color=_color(args),
        fail_on_warn=args.fail_on_warn,
        seconds=time.monotonic() - started,
    )
    _emit(text, args.output)
    return 1 if result.failed(args.fail_on_warn) else 0


def _color(args: argparse.Namespace) -> bool:
    return (
        args.format == "text"
        and args.output is None
        and sys.stdout.isatty()
        and "NO_COLOR" not in os.environ
    )


def _emit(text: str, output: str | None) -> None:
    if output is None:
        sys.stdout.write(text)
        return
    try:
        Path(output).write_text(text, encoding="utf-8")
    except OSError as exc:
        raise UsageError(f"cannot write {output}: {exc.strerror or exc}") from None


def _rego() -> Any:
    """The Rego engines, imported only when Rego runs: --no-rego must not need them."""
    try:
        return importlib.import_module("fwc.compiler.gate.rego")
    except ImportError as exc:
        raise ToolError(f"the Rego gate is unavailable ({exc}); use --no-rego") from None


def _rego_options(rego: Any, args: argparse.Namespace) -> Any:
    for path in [*args.rego, *args.data]:
        if not Path(path).exists():
            raise UsageError(f"{path}: no such file or directory")
    return rego.RegoOptions(
        policy_dirs=tuple(Path(d) for d in args.rego),
        engine="server" if args.opa_url else args.engine,
        opa_url=args.opa_url,
        data_files=tuple(Path(d) for d in args.data),
    )


def rego_gate(args: argparse.Namespace) -> Gate:
    """The Rego stage as the flags of `add_rego_arguments` choose it."""
    rego = _rego()
    options = _rego_options(rego, args)

    def gate(policy: Policy, done: Review) -> list[Finding]:
        try:
            findings: list[Finding] = rego.gate(policy, options, done)
        except rego.RegoError as exc:
            raise ToolError(f"Rego: {exc}") from None
        return findings

    return gate


def _rego_tests(args: argparse.Namespace) -> int:
    rego = _rego()
    try:
        report = rego.run_tests(_rego_options(rego, args))
    except rego.RegoError as exc:
        raise ToolError(f"Rego: {exc}") from None
    _emit(report.format(), args.output)
    return 1 if report.failed else 0
