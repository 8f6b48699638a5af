"""The `fwc check` pipeline: load, schema, normalize, semantics, analyses and Rego, per file.

Every stage returns findings instead of raising, so one run reports everything it can.
A stage runs only when its input exists: normalize and the semantic checks need a
schema-clean document, the analyses and Rego need the IR.
"""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from fwc.compiler.oracle.suite import CASES_SUFFIXES, suite_findings
from fwc.compiler.policy import schema, semantic
from fwc.compiler.policy.findings import Finding, Severity
from fwc.compiler.policy.ir import Policy
from fwc.compiler.policy.normalize import normalize
from fwc.compiler.policy.source import load_file

# An analysis reads the IR of a policy that normalized cleanly. Shadowed-rule
# analysis (FWC030) plugs in here, next to any later whole-policy analyses.
Analysis = Callable[[Policy], list[Finding]]
ANALYSES: tuple[Analysis, ...] = ()

# The Rego gate, already bound to its options (engine, policy dirs, data).
Gate = Callable[[Policy], list[Finding]]

# A directory scan takes these, but for the cases files beside policies (CASES_SUFFIXES).
POLICY_SUFFIXES = (".yaml", ".yml")


class PathError(Exception):
    """A path given on the command line does not exist or holds no policies."""


@dataclass(frozen=True)
class CheckOptions:
    gate: Gate | None = None  # None: no Rego stage
    analyses: tuple[Analysis, ...] = ANALYSES
    cases: bool = False  # also judge the cases file beside each policy (oracle/suite.py)


@dataclass(frozen=True)
class FileResult:
    file: str
    findings: tuple[Finding, ...]
    policy: Policy | None = field(default=None, compare=False)

    @property
    def errors(self) -> int:
        return sum(1 for f in self.findings if f.severity is Severity.ERROR)

    @property
    def warnings(self) -> int:
        return sum(1 for f in self.findings if f.severity is Severity.WARNING)


@dataclass(frozen=True)
class CheckResult:
    files: tuple[FileResult, ...]

    @property
    def findings(self) -> list[Finding]:
        """All findings of the run, sorted by file, line, column and id."""
        every = [f for result in self.files for f in result.findings]
        return sorted(every, key=Finding.sort_key)

    @property
    def errors(self) -> int:
        return sum(r.errors for r in self.files)

    @property
    def warnings(self) -> int:
        return sum(r.warnings for r in self.files)

    def failed(self, fail_on_warn: bool = False) -> bool:
        return self.errors > 0 or (fail_on_warn and self.warnings > 0)


def expand_paths(paths: Iterable[str | Path]) -> list[Path]:
    """Files as given; a directory means every *.yaml / *.yml below it (not *.cases.*), sorted."""
    out: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            found = sorted(
                p
                for p in path.rglob("*")
                if p.suffix in POLICY_SUFFIXES
                and not p.name.endswith(CASES_SUFFIXES)
                and p.is_file()
            )
            if not found:
                raise PathError(f"{path}: no *.yaml or *.yml policy files in this directory")
            out.extend(found)
        elif path.exists():
            out.append(path)
        else:
            raise PathError(f"{path}: no such file or directory")
    return list(dict.fromkeys(out))


def check_file(path: str | Path, options: CheckOptions | None = None) -> FileResult:
    """Runs every stage that its input allows on one policy file."""
    with _gc_paused():
        return _check_file(str(path), options or CheckOptions())


def _check_file(name: str, opts: CheckOptions) -> FileResult:
    doc, findings = load_file(name)
    if doc is None:
        return FileResult(name, _sorted(findings))
    findings += schema.validate(doc)
    if findings:
        return FileResult(name, _sorted(findings))
    policy, normalize_findings = normalize(doc)
    findings += normalize_findings
    findings += semantic.check(doc)
    if policy is not None:
        for analysis in opts.analyses:
            findings += analysis(policy)
        if opts.gate is not None:
            findings += opts.gate(policy)
        if opts.cases:
            findings += suite_findings(policy)
    return FileResult(name, _sorted(findings), policy)


def check_paths(paths: Sequence[str | Path], options: CheckOptions | None = None) -> CheckResult:
    """Checks every policy file that `paths` names; raises PathError for a missing path."""
    return CheckResult(tuple(check_file(p, options) for p in expand_paths(paths)))


@contextlib.contextmanager
def _gc_paused() -> Iterator[None]:
    """A large policy is a heap of small acyclic objects; cyclic GC passes only slow it down."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _sorted(findings: list[Finding]) -> tuple[Finding, ...]:
    return tuple(sorted(findings, key=Finding.sort_key))
