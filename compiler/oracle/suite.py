"""A policy's cases file judged without the kernel: failed cases and false properties as findings.

`fwc test` adds the kernel run to this; `fwc check` runs it on the cases file found
next to a policy (NAME.cases.yaml beside NAME.yaml).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from fwc.compiler.analysis.diff_report import describe
from fwc.compiler.analysis.index import RuleIndex
from fwc.compiler.analysis.prove import Counterexample, Property, prove_property
from fwc.compiler.oracle.cases import CLASSES, Case, cases_from_document, check_rule_names
from fwc.compiler.oracle.evaluate import Verdict, evaluate
from fwc.compiler.oracle.properties import properties_from_document
from fwc.compiler.policy.findings import Finding, error
from fwc.compiler.policy.ir import Policy
from fwc.compiler.policy.source import load_file

CASES_SUFFIXES = (".cases.yaml", ".cases.yml")
_WORDS = {1: "drop", 2: "pass"}


@dataclass(frozen=True)
class Suite:
    """What a cases file holds, once read against its policy."""

    cases: list[Case]
    properties: list[Property]
    findings: list[Finding]  # FWC061: the file or an entry is invalid


@dataclass(frozen=True)
class PropertyResult:
    prop: Property
    counterexamples: tuple[Counterexample, ...]  # empty: proven

    @property
    def holds(self) -> bool:
        return not self.counterexamples

    def finding(self) -> Finding | None:
        """FWC062 at the property when it is false, naming its first counterexample."""
        if self.holds:
            return None
        first = self.counterexamples[0]
        more = len(self.counterexamples) - 1
        rest = f"; and {more} more region(s)" if more else ""
        return error(
            "FWC062",
            f"property `{self.prop.name}` ({self.prop.claim}) is false: "
            f"{describe(first.match)} gets {counter_who(first)}; "
            f"e.g. {packet_text(first.example)}{rest}",
            self.prop.location,
            first.rule.name if first.rule is not None else None,
        )


def counter_who(counter: Counterexample) -> str:
    """`deny by rule `x` (file:line)` or `deny by the default action`."""
    if counter.rule is None:
        return f"{counter.behaviour.verdict} by the default action"
    return f"{counter.behaviour.verdict} by rule `{counter.rule.name}` ({counter.rule.location})"


def packet_text(packet: dict[str, object]) -> str:
    return "{" + ", ".join(f"{k}: {json.dumps(v)}" for k, v in packet.items()) + "}"


def read_suite(path: str | Path, policy: Policy) -> Suite:
    """The cases and properties of the file at `path`, checked against `policy`."""
    doc, findings = load_file(path)
    if doc is None:
        return Suite([], [], findings)
    cases, case_findings = cases_from_document(doc)
    findings += case_findings + check_rule_names(cases, policy)
    properties, property_findings = properties_from_document(doc, policy)
    findings += property_findings
    return Suite(cases, properties, findings)


def prove_all(policy: Policy, properties: list[Property]) -> list[PropertyResult]:
    if not properties:
        return []
    index = RuleIndex(policy)
    return [PropertyResult(p, tuple(prove_property(index, p))) for p in properties]


def meets(case: Case, action: int, decided_by: str | None) -> bool:
    """Whether an outcome is what the case expects (`decided_by` None: unknown, accepted)."""
    if action != case.expect:
        return False
    return case.rule is None or decided_by in (None, case.rule)


def who(decided_by: str) -> str:
    return decided_by if decided_by in CLASSES else f"rule `{decided_by}`"


def reference_failure(case: Case, verdict: Verdict) -> Finding | None:
    """FWC060 at the case when the reference evaluator's verdict is not the expected one."""
    if meets(case, verdict.xdp_action, verdict.decided_by):
        return None
    wanted = case.expect_word + (f" by {who(case.rule)}" if case.rule else "")
    got = f"{_WORDS[verdict.xdp_action]} by {who(verdict.decided_by)}"
    where = f" ({verdict.rule.location})" if verdict.rule is not None else ""
    return error(
        "FWC060",
        f"case `{case.name}`: expected {wanted}, the policy gives {got}{where}",
        case.location,
    )


def beside(policy_file: str | Path) -> Path | None:
    """The cases file next to a policy file (NAME.cases.yaml for NAME.yaml), if there is one."""
    path = Path(policy_file)
    if path.name.endswith(CASES_SUFFIXES):
        return None
    for suffix in CASES_SUFFIXES:
        candidate = path.with_name(path.stem + suffix)
        if candidate.is_file():
            return candidate
    return None


def suite_findings(policy: Policy) -> list[Finding]:
    """The findings of the cases file beside the policy: invalid entries, failed cases on
    the reference evaluator, false properties. None when there is no such file."""
    path = beside(policy.source_file)
    if path is None:
        return []
    suite = read_suite(path, policy)
    findings = list(suite.findings)
    for case in suite.cases:
        verdict = evaluate(policy, case.frame, interface=case.interface, ct_state=case.state)
        failed = reference_failure(case, verdict)
        if failed is not None:
            findings.append(failed)
    for result in prove_all(policy, suite.properties):
        false = result.finding()
        if false is not None:
            findings.append(false)
    return findings
