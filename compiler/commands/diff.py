"""`fwc diff`: the packets whose verdict changes between two versions of a policy, exactly."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from dataclasses import replace
from pathlib import Path

from fwc.compiler.analysis.diff import diff
from fwc.compiler.analysis.diff_report import FORMATS, PolicyDiff, findings, render
from fwc.compiler.analysis.index import RuleIndex
from fwc.compiler.analysis.match import uses_state
from fwc.compiler.check import (
    POLICY_SUFFIXES,
    CheckOptions,
    FileResult,
    PathError,
    check_file,
    expand_paths,
)
from fwc.compiler.errors import UsageError
from fwc.compiler.oracle.suite import CASES_SUFFIXES
from fwc.compiler.policy.findings import Finding, Location, Severity
from fwc.compiler.policy.interfaces import interface_classes
from fwc.compiler.policy.ir import Action, Policy
from fwc.compiler.reports import sarif
from fwc.compiler.reports.text import line
from fwc.terminal import escape_lines

Loaded = FileResult | None  # None: the policy does not exist on that side


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("old", metavar="OLD", help="the old policy file (with --base: PATH)")
    parser.add_argument("new", metavar="NEW", nargs="?", help="the new policy file")
    parser.add_argument(
        "--base",
        metavar="REF",
        help="compare PATH (a policy file or directory) in the work tree with git REF",
    )
    parser.add_argument(
        "--format", choices=(*FORMATS, "sarif"), default="text", help="report format"
    )
    parser.add_argument(
        "--fail-on",
        choices=("changes", "allowed"),
        default="changes",
        help="exit 1 on any verdict change (default) or only when traffic is newly allowed",
    )


def run(args: argparse.Namespace) -> int:
    if args.base is not None:
        if args.new is not None:
            raise UsageError("with --base give one PATH, not OLD and NEW")
        pairs = _base_pairs(args.base, Path(args.old))
    else:
        if args.new is None:
            raise UsageError("give OLD and NEW policy files, or --base REF PATH")
        pairs = [(_load(args.old, args.old), _load(args.new, args.new), None)]
    failed = [r for old, new, _ in pairs for r in (old, new) if r is not None and not _usable(r)]
    if failed:
        errors = [f for r in failed for f in _errors(r)]
        if args.format == "sarif":
            # Code scanning gets the errors that stop the diff, on their lines.
            log = sarif.document([r.file for r in failed], errors)
            sys.stdout.write(json.dumps(log, indent=2) + "\n")
        else:
            sys.stdout.write("".join(line(f) + "\n" for f in errors))
        return 1
    diffs = [_diff(old, new, in_tree) for old, new, in_tree in pairs]
    text = _render(diffs, args.format)
    # paths and names in text and markdown never reach a terminal raw (JSON, SARIF escape theirs)
    sys.stdout.write(text if args.format in ("json", "sarif") else escape_lines(text))
    verdicts = [c for d in diffs for c in d.verdicts]
    if args.fail_on == "allowed":
        verdicts = [c for c in verdicts if c.newly_allowed]
    return 1 if verdicts else 0


def _load(path: str, shown: str) -> FileResult:
    if not Path(path).is_file():
        raise UsageError(f"{shown}: no such file")
    return check_file(path, CheckOptions(gate=None))


def _usable(result: FileResult) -> bool:
    return result.policy is not None and not _errors(result)


def _errors(result: FileResult) -> list[Finding]:
    return [f for f in result.findings if f.severity is Severity.ERROR]


def _absent(other: Loaded) -> Policy:
    """The side where a policy does not exist (added or removed): no firewall, every
    packet passes."""
    assert other is not None and other.policy is not None
    return replace(other.policy, rules=(), default_action=Action.ALLOW, source_file="(none)")


def _render(diffs: list[PolicyDiff], fmt: str) -> str:
    if fmt != "sarif":
        return render(diffs, fmt)
    files = [f for d in diffs for f in (d.new, d.old_in_tree or d.old) if f != "(none)"]
    log = sarif.document(list(dict.fromkeys(files)), findings(diffs))
    return json.dumps(log, indent=2) + "\n"


def _diff(old: Loaded, new: Loaded, in_tree: str | None) -> PolicyDiff:
    """`in_tree`: with --base, where the old side's file is (or was) in the work tree."""
    a = old.policy if old is not None and old.policy is not None else _absent(new)
    b = new.policy if new is not None and new.policy is not None else _absent(old)
    shared = interface_classes(a, b)  # one numbering of interface classes for both sides
    states = uses_state(a, b)  # both sides split the space by connection state, or neither
    changes = diff(RuleIndex(a, shared, states), RuleIndex(b, shared, states))
    return PolicyDiff(
        old.file if old is not None else "(none)",
        new.file if new is not None else "(none)",
        tuple(changes),
        in_tree,
        tuple((rule.name, rule.location) for rule in b.rules) if new is not None else (),
    )


def _git(cwd: Path, *argv: str) -> str:
    try:
        done = subprocess.run(["git", *argv], cwd=cwd, capture_output=True, text=True, check=False)
    except FileNotFoundError:
        raise UsageError("--base needs git on PATH") from None
    if done.returncode != 0:
        said = done.stderr.strip().splitlines()
        raise UsageError(f"git {' '.join(argv)}: {said[-1] if said else 'failed'}")
    return done.stdout


Pair = tuple[Loaded, Loaded, str | None]


def _base_pairs(ref: str, path: Path) -> list[Pair]:
    """(old at `ref`, new in the work tree, the file's place in the work tree) for every
    policy file under `path`."""
    if not path.exists():
        raise UsageError(f"{path}: no such file or directory")
    where = path if path.is_dir() else path.parent
    top = Path(_git(where, "rev-parse", "--show-toplevel").strip())
    try:
        new_files = [p.resolve() for p in expand_paths([path])]
    except PathError:
        new_files = []
    rel = path.resolve().relative_to(top)
    listed = _git(top, "ls-tree", "-r", "--name-only", ref, "--", str(rel) or ".")
    old_names = [n for n in listed.splitlines() if _is_policy(n)]
    names = sorted(set(old_names) | {str(p.relative_to(top)) for p in new_files})
    if not names:
        raise UsageError(f"{path}: no policy files here or at {ref}")
    pairs: list[Pair] = []
    with tempfile.TemporaryDirectory(prefix="fwc-diff-") as tmp:
        for name in names:
            old: Loaded = None
            if name in old_names:
                copy = Path(tmp) / name
                copy.parent.mkdir(parents=True, exist_ok=True)
                copy.write_text(_git(top, "show", f"{ref}:{name}"))
                old = _relabel(
                    check_file(copy, CheckOptions(gate=None)), str(copy), f"{ref}:{name}"
                )
            new: Loaded = None
            if (top / name).is_file():
                new = check_file(_shown(top / name), CheckOptions(gate=None))
            pairs.append((old, new, str(_shown(top / name))))
    return pairs


def _shown(path: Path) -> Path:
    """`path` relative to the working directory when it lies below it (as reports, and code
    scanning's SARIF upload, want it), else as it is."""
    relative = os.path.relpath(path)
    return path if relative.startswith("..") else Path(relative)


def _is_policy(name: str) -> bool:
    return name.endswith(POLICY_SUFFIXES) and not name.endswith(CASES_SUFFIXES)


def _relabel(result: FileResult, path: str, shown: str) -> FileResult:
    """The result of checking a temporary copy, with its places named `REF:path`."""

    def fix(location: Location) -> Location:
        return replace(location, file=shown) if location.file == path else location

    policy = result.policy
    if policy is not None:
        rules = tuple(replace(r, location=fix(r.location)) for r in policy.rules)
        policy = replace(policy, rules=rules, source_file=shown)
    findings = tuple(replace(f, location=fix(f.location)) for f in result.findings)
    return FileResult(shown, findings, policy)
