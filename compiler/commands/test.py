"""`fwc test`: checks packet cases against the reference evaluator and, when it can, the kernel,
and proves the file's properties over whole regions."""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
import tempfile
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

from fwc import __version__
from fwc.artifact.ifclass import IFACE_KEY, IFACE_VALUE, NO_CLASS, TEST_RUN_IFINDEX, class_of
from fwc.compiler.analysis.diff_report import describe
from fwc.compiler.analysis.prove import Counterexample
from fwc.compiler.backend.plan import STRATEGIES
from fwc.compiler.check import CheckOptions, check_file
from fwc.compiler.errors import ToolError, UsageError
from fwc.compiler.oracle.cases import Case
from fwc.compiler.oracle.evaluate import XDP_DROP, XDP_PASS, evaluate
from fwc.compiler.oracle.packet import ETH_HLEN, Packet
from fwc.compiler.oracle.suite import (
    PropertyResult,
    counter_who,
    packet_text,
    prove_all,
    read_suite,
    reference_failure,
    who,
)
from fwc.compiler.policy.findings import Finding, Severity, error
from fwc.compiler.policy.ir import IPPROTO_TCP, IPPROTO_UDP, Policy
from fwc.compiler.reports.formats import finding_dict
from fwc.compiler.reports.github import annotation
from fwc.compiler.reports.text import line

FORMATS = ("text", "json", "github", "junit")
_WORDS = {XDP_PASS: "pass", XDP_DROP: "drop"}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("policy", metavar="POLICY", help="the policy file")
    parser.add_argument("cases", metavar="CASES", help="the packet cases file")
    parser.add_argument("--format", choices=FORMATS, default="text", help="report format")
    parser.add_argument(
        "--kernel",
        choices=("auto", "always", "never"),
        default="auto",
        help="also run the compiled program in the kernel: auto = when root (default)",
    )
    parser.add_argument(
        "--strategy",
        choices=("auto", *STRATEGIES),
        default="auto",
        help="compile strategy for the kernel run (default: auto)",
    )


@dataclass(frozen=True)
class Outcome:
    """A reference or kernel result for one case: its XDP action and who decided."""

    action: int
    decided_by: str | None  # None when the kernel's counters could not tell

    def describe(self) -> str:
        by = f" by {who(self.decided_by)}" if self.decided_by else ""
        return f"{_WORDS.get(self.action, f'XDP action {self.action}')}{by}"


@dataclass(frozen=True)
class CaseResult:
    case: Case
    reference: Outcome
    kernel: Outcome | None
    findings: tuple[Finding, ...]

    @property
    def passed(self) -> bool:
        return not self.findings


def run(args: argparse.Namespace) -> int:
    for path in (args.policy, args.cases):
        if not Path(path).exists():
            raise UsageError(f"{path}: no such file")
        if not Path(path).is_file():
            raise UsageError(f"{path}: not a file")
    checked = check_file(args.policy, CheckOptions(gate=None))
    errors = [f for f in checked.findings if f.severity is Severity.ERROR]
    if errors or checked.policy is None:
        _print_findings(errors, args.format)
        return 1
    policy = checked.policy
    suite = read_suite(args.cases, policy)
    if suite.findings:
        _print_findings(suite.findings, args.format)
        return 1
    proofs = prove_all(policy, suite.properties)
    kernel, why = _kernel(args, policy) if suite.cases else (None, "no packet cases")
    try:
        results = [_check(case, policy, kernel) for case in suite.cases]
    finally:
        if kernel is not None:
            kernel.close()
    note = "kernel: checked" if kernel is not None else f"kernel: not checked ({why})"
    report = Report(args.policy, args.cases, results, proofs, note)
    sys.stdout.write(_render(args.format, report))
    return 0 if report.passed else 1


def _check(case: Case, policy: Policy, kernel: _Kernel | None) -> CaseResult:
    verdict = evaluate(policy, case.frame, interface=case.interface, ct_state=case.state)
    reference = Outcome(verdict.xdp_action, verdict.decided_by)
    failed = reference_failure(case, verdict)
    findings: list[Finding] = [failed] if failed is not None else []
    outcome = None
    if kernel is not None and _kernel_state_agrees(policy, verdict.packet):
        outcome = kernel.run(case.frame, case.interface)
    if outcome is not None and (
        outcome.action != reference.action or outcome.decided_by not in (None, reference.decided_by)
    ):
        message = (
            f"case `{case.name}`: the compiled program gives {outcome.describe()} but the "
            f"reference evaluator gives {reference.describe()}: a compiler bug, please report it"
        )
        findings.append(error("FWC060", message, case.location))
    return CaseResult(case, reference, outcome, tuple(findings))


def _kernel_state_agrees(policy: Policy, packet: Packet) -> bool:
    """Whether the kernel run sees the case's connection state: the test run looks the packet
    up in a conntrack table that holds no entry for it, which gives `new` for TCP and UDP and
    `invalid` for an ICMP error; a case with another state runs on the reference only."""
    if packet.ct_state is None or not any(r.has_state for r in policy.rules):
        return True
    expected = "new" if packet.protocol in (IPPROTO_TCP, IPPROTO_UDP) else "invalid"
    return packet.ct_state == expected


class _Kernel:
    """The compiled policy loaded in the kernel; each run reads the counters to find the rule."""

    def __init__(self, program: Any, slots: dict[int, str], error: type[Exception]) -> None:
        self.program = program
        self.slots = slots
        self.error = error

    def run(self, frame: bytes, interface: str | None = None) -> Outcome | None:
        """None for a frame the kernel's test run refuses: shorter than an Ethernet header.

        A test run's ingress interface is the namespace's loopback (ifindex 1): its entry in
        the interface-class map stands for the case's interface."""
        if len(frame) < ETH_HLEN:
            return None
        self._ingress(interface)
        self.program.reset_counters()
        try:
            retval = int(self.program.test_run(frame).retval)
        except self.error as exc:
            raise ToolError(f"BPF_PROG_TEST_RUN refused a {len(frame)}-byte frame: {exc}") from None
        hits = [
            self.slots[i]
            for i, (packets, _) in enumerate(self.program.counters())
            if packets and self.slots.get(i, "would_drop") != "would_drop"
        ]
        decided = hits[0].removeprefix("rule:") if len(hits) == 1 else None
        return Outcome(retval, decided)

    def _ingress(self, interface: str | None) -> None:
        table = self.program.spec.manifest.interface_classes
        if table is None:
            return
        libbpf = importlib.import_module("fwc.loader.kernel.libbpf")
        klass = NO_CLASS if interface is None else class_of(interface, table)
        key = IFACE_KEY.pack(TEST_RUN_IFINDEX)  # below IFACES_ENTRIES: the array's
        libbpf.map_update(self.program.map_fd(table.map), key, IFACE_VALUE.pack(klass))

    def close(self) -> None:
        self.program.close()


def _modules() -> tuple[ModuleType, ModuleType, ModuleType] | str:
    try:
        build = importlib.import_module("fwc.compiler.backend.build")
        plan = importlib.import_module("fwc.compiler.backend.plan")
        kernel = importlib.import_module("fwc.loader.kernel.program")
    except ImportError as exc:
        return f"the compiler or kernel layer is not available: {exc}"
    return build, plan, kernel


def _kernel(args: argparse.Namespace, policy: Policy) -> tuple[_Kernel | None, str]:
    """The loaded program, or None and why not in auto mode; `always` fails instead."""
    if args.kernel == "never":
        return None, "--kernel never"
    if os.geteuid() != 0:
        if args.kernel == "always":
            raise ToolError("--kernel always needs root (BPF_PROG_TEST_RUN)")
        return None, "not root"
    found = _modules()
    if isinstance(found, str):
        if args.kernel == "always":
            raise ToolError(found)
        return None, found
    build, plan, kernel = found
    with tempfile.TemporaryDirectory(prefix="fwc-test-") as tmp:
        output = Path(tmp) / "fwc_xdp.o"
        try:
            result = build.compile_policy(policy, output=output, strategy=args.strategy)
        except plan.PlanError as exc:
            if args.kernel == "always":
                raise ToolError(f"cannot compile {args.policy}: {exc}") from None
            return None, f"cannot compile: {exc}"
        try:
            program = kernel.LoadedProgram.load(output)
        except kernel.KernelError as exc:
            raise ToolError(str(exc)) from None
    table = result.manifest["counters"]["slots"]
    slots = dict(zip(table["index"], table["name"], strict=True))
    return _Kernel(program, slots, kernel.KernelError), "checked"


# ---- reports ------------------------------------------------------------------------


def _print_findings(findings: list[Finding], fmt: str) -> None:
    ordered = sorted(findings, key=Finding.sort_key)
    if fmt == "json":
        doc = {
            "tool": "fwc",
            "version": __version__,
            "findings": [finding_dict(f) for f in ordered],
        }
        sys.stdout.write(json.dumps(doc, indent=2) + "\n")
    elif fmt == "github":
        sys.stdout.write("".join(annotation(f) + "\n" for f in ordered))
    elif fmt == "junit":
        sys.stdout.write(_junit(None, ordered))
    else:
        sys.stdout.write("".join(line(f) + "\n" for f in ordered))


@dataclass(frozen=True)
class Report:
    policy: str
    cases_file: str
    results: list[CaseResult]
    proofs: list[PropertyResult]
    note: str

    @property
    def passed(self) -> bool:
        return all(r.passed for r in self.results) and all(p.holds for p in self.proofs)

    @property
    def findings(self) -> list[Finding]:
        found = [f for r in self.results for f in r.findings]
        return found + [f for p in self.proofs if (f := p.finding()) is not None]


# Counterexample regions a report lists per false property; JSON gives the total too.
SHOWN_COUNTEREXAMPLES = 20


def _summary(report: Report) -> str:
    results, proofs = report.results, report.proofs
    failed = sum(1 for r in results if not r.passed)
    text = f"{len(results)} cases: {len(results) - failed} passed, {failed} failed"
    if proofs:
        false = sum(1 for p in proofs if not p.holds)
        text += f"; {len(proofs)} properties: {len(proofs) - false} proven, {false} false"
    return f"{text}; {report.note}"


def _render(fmt: str, report: Report) -> str:
    if fmt == "json":
        return _json(report)
    if fmt == "junit":
        return _junit(report, [])
    if fmt == "github":
        body = "".join(annotation(f) + "\n" for f in report.findings)
        return body + _summary(report) + "\n"
    return _text(report)


def _text(report: Report) -> str:
    """Each finding on its line; under a false property, every counterexample region."""
    out = [line(f) for r in report.results for f in r.findings]
    for proof in report.proofs:
        false = proof.finding()
        if false is None:
            continue
        out.append(line(false))
        for counter in proof.counterexamples[:SHOWN_COUNTEREXAMPLES]:
            out.append(f"    {describe(counter.match)}: {counter_who(counter)}")
            out.append(f"      e.g. {packet_text(counter.example)}")
        hidden = len(proof.counterexamples) - SHOWN_COUNTEREXAMPLES
        if hidden > 0:
            out.append(f"    and {hidden} more region(s) (--format json lists them)")
    return "".join(f"{text}\n" for text in out) + _summary(report) + "\n"


def _outcome_dict(outcome: Outcome | None) -> dict[str, Any] | None:
    if outcome is None:
        return None
    return {
        "verdict": _WORDS.get(outcome.action, str(outcome.action)),
        "xdp_action": outcome.action,
        "decided_by": outcome.decided_by,
    }


def _counter_dict(counter: Counterexample) -> dict[str, Any]:
    rule = counter.rule
    return {
        "match": counter.match,
        "verdict": counter.behaviour.verdict,
        "rule": rule.name if rule is not None else "default",
        "location": str(rule.location) if rule is not None else None,
        "example": counter.example,
    }


def _property_dict(proof: PropertyResult) -> dict[str, Any]:
    prop = proof.prop
    return {
        "name": prop.name,
        "file": prop.location.file,
        "line": prop.location.line,
        "expect" if not prop.negated else "expect_not": prop.action.value,
        "holds": proof.holds,
        "counterexamples": [
            _counter_dict(c) for c in proof.counterexamples[:SHOWN_COUNTEREXAMPLES]
        ],
        "counterexamples_total": len(proof.counterexamples),
    }


def _json(report: Report) -> str:
    results, proofs = report.results, report.proofs
    doc = {
        "tool": "fwc",
        "version": __version__,
        "format_version": 1,
        "policy": report.policy,
        "cases_file": report.cases_file,
        "kernel": report.note.removeprefix("kernel: "),
        "cases": [
            {
                "name": r.case.name,
                "file": r.case.location.file,
                "line": r.case.location.line,
                "expect": r.case.expect_word,
                "rule": r.case.rule,
                "passed": r.passed,
                "reference": _outcome_dict(r.reference),
                "kernel": _outcome_dict(r.kernel),
            }
            for r in results
        ],
        "properties": [_property_dict(p) for p in proofs],
        "findings": [finding_dict(f) for f in report.findings],
        "summary": {
            "cases": len(results),
            "passed": sum(1 for r in results if r.passed),
            "failed": sum(1 for r in results if not r.passed),
            "properties": len(proofs),
            "proven": sum(1 for p in proofs if p.holds),
            "false": sum(1 for p in proofs if not p.holds),
        },
    }
    return json.dumps(doc, indent=2) + "\n"


def _junit(report: Report | None, invalid: list[Finding]) -> str:
    """One test case per packet case and per property; invalid input is one failing case
    per finding."""
    results = report.results if report is not None else []
    proofs = report.proofs if report is not None else []
    total = len(results) + len(proofs) + len(invalid)
    failures = (
        sum(1 for r in results if not r.passed)
        + sum(1 for p in proofs if not p.holds)
        + len(invalid)
    )
    suites = ET.Element("testsuites", name="fwc test", tests=str(total), failures=str(failures))
    suite = ET.SubElement(
        suites,
        "testsuite",
        name="fwc test",
        tests=str(total),
        failures=str(failures),
        errors="0",
        skipped="0",
    )
    named: list[tuple[str, str, list[Finding]]] = [
        ("fwc.test", r.case.name, list(r.findings)) for r in results
    ]
    for proof in proofs:
        false = proof.finding()
        named.append(("fwc.property", proof.prop.name, [false] if false is not None else []))
    named += [("fwc.test", str(f.location), [f]) for f in invalid]
    for classname, name, findings in named:
        case = ET.SubElement(suite, "testcase", classname=classname, name=name)
        for finding in findings:
            failure = ET.SubElement(case, "failure", message=finding.message, type=finding.id)
            failure.text = line(finding)
    ET.indent(suites)
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(suites, encoding="unicode") + "\n"
    )
