"""`fwc compile`: a checked policy in, a (verified) XDP artifact out."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TextIO

from fwc.compiler.backend.build import (
    BuildError,
    BuildResult,
    build_plan,
    check_output,
    default_cache_dir,
)
from fwc.compiler.backend.options import (
    DEFAULT_LOG_RATE,
    DEFAULT_RATE_LIMIT_BUCKETS,
    CompileOptions,
)
from fwc.compiler.backend.plan import PlanError, make_plan
from fwc.compiler.backend.render import render_mapped
from fwc.compiler.backend.verify import Rejected, verify
from fwc.compiler.check import (
    ANALYSES,
    CheckOptions,
    CheckResult,
    FileResult,
    check_file,
    gc_paused,
)
from fwc.compiler.commands.check import add_rego_arguments, rego_gate
from fwc.compiler.errors import UsageError
from fwc.compiler.policy.findings import Finding, has_errors
from fwc.compiler.progress import Progress
from fwc.compiler.reports.formats import render as report

STRATEGY_CHOICES = ("auto", "constants", "tables")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("policy", metavar="POLICY", help="policy file (YAML)")
    parser.add_argument("-o", "--output", required=True, metavar="OUT", help="artifact to write")
    parser.add_argument(
        "--strategy", choices=STRATEGY_CHOICES, default="auto", help="code strategy (auto picks)"
    )
    parser.add_argument(
        "--dry-run", action="store_true", help="drops pass instead and count as would_drop"
    )
    parser.add_argument(
        "--verify", action="store_true", help="load the program so the kernel verifier checks it"
    )
    parser.add_argument(
        "--rate-limit-buckets",
        type=_positive,
        default=DEFAULT_RATE_LIMIT_BUCKETS,
        metavar="N",
        help="rate-limit buckets (rule, source) kept at once, least recently used go first",
    )
    parser.add_argument(
        "--log-rate",
        type=_positive,
        default=DEFAULT_LOG_RATE,
        metavar="N",
        help=f"log events per second per CPU at most (default {DEFAULT_LOG_RATE})",
    )
    parser.add_argument("--emit-c", metavar="FILE", help="also write the generated C source")
    parser.add_argument("--no-cache", action="store_true", help="do not use the build cache")
    parser.add_argument(
        "--no-gate",
        action="store_true",
        help="skip the behaviour analyses and Rego invariants of `fwc check` (said on "
        "stderr); schema and semantic errors still stop the build",
    )
    add_rego_arguments(parser)


def run(args: argparse.Namespace) -> int:
    path = Path(args.policy)
    if not path.exists():
        raise UsageError(f"{path}: no such file")
    try:
        check_output(Path(args.output))
    except BuildError as exc:
        raise UsageError(str(exc)) from None
    if args.no_gate:
        print(
            f"fwc compile: --no-gate: {path} was not checked for shadowed rules nor against "
            "the Rego invariants",
            file=sys.stderr,
        )
    # The whole build, not only its check: the tables of a million CIDRs are as acyclic.
    with Progress("fwc compile") as progress, gc_paused():
        return _compile(args, path, progress)


def _compile(args: argparse.Namespace, path: Path, progress: Progress) -> int:
    # the gate of `fwc check`: schema and semantics, and unless --no-gate the analyses and Rego
    gate = None if args.no_gate else rego_gate(args)
    analyses = () if args.no_gate else ANALYSES
    checked = check_file(path, CheckOptions(gate=gate, analyses=analyses, stage=progress.stage))
    if has_errors(list(checked.findings)) or checked.policy is None:
        progress.clear()
        return _findings(checked, list(checked.findings))
    policy = checked.policy
    if checked.findings:
        progress.clear()
        _report(checked, list(checked.findings), sys.stderr)
    options = CompileOptions(rate_limit_buckets=args.rate_limit_buckets, log_rate=args.log_rate)
    progress.stage("plan")
    try:
        plan = make_plan(policy, args.strategy, args.dry_run, options)
    except PlanError as exc:
        progress.clear()
        return _findings(checked, [*checked.findings, *exc.findings])
    progress.stage("render C")
    rendered = render_mapped(plan)
    if args.emit_c:
        _write(Path(args.emit_c), rendered.source)
    cache_dir = None if args.no_cache else default_cache_dir()
    progress.stage("build with clang")
    result = build_plan(plan, Path(args.output), cache_dir, rendered)
    if args.verify:
        progress.stage("kernel verifier")
        outcome = verify(result.path, result.rendered, policy)
        if isinstance(outcome, Rejected):
            result.path.unlink(missing_ok=True)
            progress.clear()
            print(outcome.log_tail, file=sys.stderr)
            return _findings(checked, [outcome.finding])
    progress.clear()
    _summary(result, args.verify)
    return 0


# The kernel's limit for a hash map's entries is far above this; the cap keeps a typo
# from asking for gigabytes of map memory.
MAX_COUNT = 1 << 26


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if not 1 <= value <= MAX_COUNT:
        raise argparse.ArgumentTypeError(f"{value} is not between 1 and {MAX_COUNT}")
    return value


def _findings(checked: FileResult, findings: list[Finding]) -> int:
    _report(checked, findings, sys.stdout)
    return 1


def _report(checked: FileResult, findings: list[Finding], stream: TextIO) -> None:
    ordered = tuple(sorted(findings, key=Finding.sort_key))
    stream.write(report(CheckResult((FileResult(checked.file, ordered, checked.policy),)), "text"))


def _summary(result: BuildResult, verified: bool) -> None:
    program = result.manifest["program"]
    rules = len(result.manifest["rules"]["id"])
    note = ", verified by the kernel" if verified else ""
    print(
        f"wrote {result.path}: strategy {result.plan.strategy}, "
        f"{rules} rule{'' if rules == 1 else 's'}, "
        f"{program['insn_count']} instructions{note}"
    )


def _write(path: Path, text: str) -> None:
    try:
        path.write_text(text)
    except OSError as exc:
        raise UsageError(f"cannot write {path}: {exc.strerror}") from None
