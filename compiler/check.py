"""The `fwc check` pipeline: load, schema, normalize, semantics, analyses and Rego, per file.

Every stage returns findings instead of raising, so one run reports everything it can.
Normalize and the semantic checks read what schema errors leave readable; the analyses
and Rego need the IR, which only a policy without errors yields.
"""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from fwc.compiler.analysis.findings import behaviour_findings
from fwc.compiler.analysis.review import Review, review
from fwc.compiler.oracle.suite import CASES_SUFFIXES, suite_findings
from fwc.compiler.policy import schema, semantic
from fwc.compiler.policy.findings import Finding, Severity, has_errors
from fwc.compiler.policy.ir import Policy
from fwc.compiler.policy.normalize import normalize
from fwc.compiler.policy.readable import readable
from fwc.compiler.policy.source import load_file

# An analysis reads the behaviour of a policy that normalized cleanly. `fwc check` runs
# these; the commands that only load a policy (diff, explain, test) run none.
Analysis = Callable[[Review], list[Finding]]
ANALYSES: tuple[Analysis, ...] = (behaviour_findings,)

# The Rego gate, already bound to its options (engine, policy dirs, data); its input
# carries the same review.
Gate = Callable[[Policy, Review], list[Finding]]

# Told the name of each stage as it starts (a progress display listens).
StageHook = Callable[[str], None]

# A directory scan takes these, but for the cases files beside policies (CASES_SUFFIXES).
POLICY_SUFFIXES = (".yaml", ".yml")


class PathError(Exception):
    """A path given on the command line does not exist or holds no policies."""


@dataclass(frozen=True)
class CheckOptions:
    gate: Gate | None = None  # None: no Rego stage
    analyses: tuple[Analysis, ...] = ()
    stage: StageHook | None = None
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
    """Files as given; a directory means every *.yaml / *.yml below it, in any case (*.YAML),
    but not *.cases.*, sorted."""
    out: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            found = sorted(
                p
                for p in path.rglob("*")
                if p.suffix.lower() in POLICY_SUFFIXES
                and not p.name.lower().endswith(CASES_SUFFIXES)
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
    with gc_paused():
        return _check_file(str(path), options or CheckOptions())


def _check_file(name: str, opts: CheckOptions) -> FileResult:
    tell = opts.stage or _nobody
    tell("load")
    doc, findings = load_file(name)
    if doc is None:
        return FileResult(name, _sorted(findings))
    tell("schema")
    schema_findings, broken = schema.validate_paths(doc)
    findings += schema_findings
    # The checks below run on what the schema errors leave readable, so one run reports
    # every mistake; a policy with schema errors yields no IR.
    part = readable(doc, broken)
    tell("normalize")
    policy, normalize_findings = normalize(part.doc)
    findings += normalize_findings
    tell("semantics")
    findings += semantic.check(part.doc, part.partial)
    if schema_findings:
        policy = None
    if policy is not None and (opts.analyses or opts.gate is not None):
        tell("analyses")
        done = review(policy)
        # Behaviour is worth reporting only of a policy that says what its author meant.
        if not has_errors(findings):
            # A rule FWC036 already calls one that never matches gets no second finding
            # saying that its packets are all shadowed or redundant: it has none.
            never = {f.rule for f in findings if f.id == "FWC036"}
            for analysis in opts.analyses:
                findings += [
                    f
                    for f in analysis(done)
                    if not (f.id in ("FWC030", "FWC035") and f.rule in never)
                ]
        if opts.gate is not None:
            tell("rego")
            findings += opts.gate(policy, done)
    if policy is not None and opts.cases:
        tell("cases")
        findings += suite_findings(policy)
    return FileResult(name, _sorted(findings), policy)


def check_paths(paths: Sequence[str | Path], options: CheckOptions | None = None) -> CheckResult:
    """Checks every policy file that `paths` names; raises PathError for a missing path."""
    opts = options or CheckOptions()
    files = expand_paths(paths)
    results = []
    for number, path in enumerate(files, 1):
        file_opts = opts
        if opts.stage is not None:
            file_opts = replace(opts, stage=_within(opts.stage, f"{number}/{len(files)} {path}"))
        results.append(check_file(path, file_opts))
    return CheckResult(tuple(results))


def _within(hook: StageHook, where: str) -> StageHook:
    """`hook`, told each stage as `where: stage`."""

    def tell(stage: str) -> None:
        hook(f"{where}: {stage}")

    return tell


def _nobody(stage: str) -> None:
    """No one follows the stages."""


@contextlib.contextmanager
def gc_paused() -> Iterator[None]:
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
