"""The Rego gate: the organisation's invariants over the normalized policy, as findings.

Conventions follow conftest: rules `deny`, `violation`, `warn` (optionally `_suffix`) in
package `fwc` or `main`, waived by `exception`; `test_` rules run by `run_tests`.
docs/rego.md is the user's guide.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import yaml

from fwc.compiler.analysis.review import Review, review
from fwc.compiler.gate import opa as rego_opa
from fwc.compiler.gate import regopy as rego_regopy
from fwc.compiler.gate import server as rego_server
from fwc.compiler.gate.input import policy_doc
from fwc.compiler.gate.modules import Module, ScanError, load_modules, unknown_calls
from fwc.compiler.policy.findings import Finding, Location, Severity
from fwc.compiler.policy.ir import Policy
from fwc.files import POLICY_LIMIT, FileReadError, read_bounded

NAMESPACES = ("fwc", "main")
ENGINES = ("auto", "regopy", "opa", "server")
_GATE_RULE = re.compile(r"(deny|violation|warn)(_[A-Za-z0-9_]+)?|exception")
_TEST_RULE = re.compile(r"test_[A-Za-z0-9_]*")

# A gate rule: (package, rule name).
GateRule = tuple[str, str]


@dataclass(frozen=True)
class RegoOptions:
    policy_dirs: tuple[Path, ...] = ()  # empty: the bundled rego/ set
    engine: str = "auto"  # auto | regopy | opa | server; auto is regopy
    opa_url: str | None = None  # implies engine "server"
    data_files: tuple[Path, ...] = ()  # JSON or YAML documents merged under data.


class RegoError(Exception):
    """The engine failed, a module does not parse, or it calls a built-in the engine lacks."""


@dataclass(frozen=True)
class RegoTestResult:
    name: str  # data.<package>.<rule>
    passed: bool
    message: str = ""


@dataclass
class RegoTestReport:
    results: list[RegoTestResult] = field(default_factory=list)

    @property
    def failed(self) -> int:
        return sum(1 for r in self.results if not r.passed)

    def format(self) -> str:
        """Like `opa test`: failures first with their reason, then the tally."""
        lines: list[str] = []
        for result in self.results:
            if result.passed:
                lines.append(f"{result.name}: PASS")
            else:
                reason = f" ({result.message})" if result.message else ""
                lines.append(f"{result.name}: FAIL{reason}")
        total = len(self.results)
        lines.append("-" * 80)
        if self.failed:
            lines.append(f"PASS: {total - self.failed}/{total}")
            lines.append(f"FAIL: {self.failed}/{total}")
        else:
            lines.append(f"PASS: {total}/{total}")
        return "\n".join(lines) + "\n"


@dataclass(frozen=True)
class _Loaded:
    modules: tuple[Module, ...]
    data: str  # the merged data documents, as JSON (kept hashable for the cache)


def _engine(options: RegoOptions) -> str:
    if options.opa_url:
        return "server"
    if options.engine not in ENGINES:
        raise RegoError(f"unknown Rego engine {options.engine!r} (one of {', '.join(ENGINES)})")
    if options.engine == "server":
        raise RegoError("the server engine needs --opa-url")
    return "regopy" if options.engine == "auto" else options.engine


@cache
def _load(options: RegoOptions) -> _Loaded:
    engine = _engine(options)
    if engine == "opa" and rego_opa.find_opa() is None:
        raise RegoError("--engine opa: the `opa` binary is not on PATH")
    try:
        modules = load_modules(options.policy_dirs)
    except ScanError as exc:
        raise RegoError(str(exc)) from None
    if engine == "regopy":
        missing = unknown_calls(modules, rego_regopy.is_builtin)
        if missing:
            raise RegoError(
                "; ".join(
                    f"{m.display}:{c.line}: `{c.name}` is not a built-in the regopy engine "
                    "supports (it would evaluate to undefined and the rule would never fire)"
                    for m, c in missing
                )
            )
    return _Loaded(tuple(modules), json.dumps(_data(options.data_files), sort_keys=True))


def _data(files: tuple[Path, ...]) -> dict[str, Any]:
    merged: dict[str, Any] = {}
    for path in files:
        try:
            text = read_bounded(path, POLICY_LIMIT).decode("utf-8")
            doc = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
        except (
            FileReadError,
            UnicodeDecodeError,
            ValueError,
            RecursionError,
            yaml.YAMLError,
        ) as exc:
            raise RegoError(f"cannot read data file {path}: {exc}") from None
        except (LookupError, TypeError, AttributeError):
            # PyYAML's constructors on an explicit tag that does not fit (`!!bool x`)
            raise RegoError(f"cannot read data file {path}: a tagged value is not valid") from None
        if not isinstance(doc, dict):
            raise RegoError(f"data file {path} must hold a mapping at the top level")
        _merge(merged, doc, str(path))
    return merged


def _merge(into: dict[str, Any], doc: dict[str, Any], source: str) -> None:
    for key, value in doc.items():
        key = str(key)
        if isinstance(value, dict) and isinstance(into.get(key), dict):
            _merge(into[key], value, source)
        elif key in into and into[key] != value:
            raise RegoError(f"data file {source}: `{key}` conflicts with an earlier data file")
        else:
            into[key] = value


def _evaluate(
    options: RegoOptions,
    modules: list[Module],
    data: Any,
    doc: dict[str, Any],
    rules: list[GateRule],
) -> dict[str, dict[str, Any]]:
    """The gate rules' values by package and rule name, from one query over the input `doc`."""
    engine = _engine(options)
    query = gate_query(rules)
    try:
        if engine == "server":
            assert options.opa_url is not None
            value = rego_server.evaluate(options.opa_url, modules, data, doc, query)
        elif engine == "opa":
            value = rego_opa.evaluate(modules, data, doc, query)
        else:
            value = rego_regopy.evaluate(modules, data, doc, query)
    except rego_regopy.EngineFailure as exc:
        raise RegoError(str(exc)) from None
    return value or {}


def gate_rules(modules: list[Module]) -> list[GateRule]:
    """The deny/violation/warn/exception rules of the gate's packages, in module order."""
    wanted: list[GateRule] = []
    for module in modules:
        if module.package in NAMESPACES:
            wanted += [
                (module.package, r)
                for r in module.rules
                if _GATE_RULE.fullmatch(r) and (module.package, r) not in wanted
            ]
    return wanted


def gate_query(rules: list[GateRule]) -> str:
    """One query binding x to {package: {rule: value}}, leaving out undefined rules.

    Each rule is referenced by name: a reference with a variable key (`data.fwc[name]`)
    would make regopy evaluate every rule of the package, the helpers included.
    """
    by_package: dict[str, list[str]] = {}
    for package, name in rules:
        by_package.setdefault(package, []).append(name)
    parts = [
        f'"{package}": object.union_n(['
        + ", ".join(f'{{"{n}": v | v := data.{package}.{n}}}' for n in names)
        + "])"
        for package, names in by_package.items()
    ]
    return "x := {" + ", ".join(parts) + "}"


def _is_test_file(module: Module) -> bool:
    return module.path.name.endswith("_test.rego")


def gate(policy: Policy, options: RegoOptions, done: Review | None = None) -> list[Finding]:
    """FWC040 for each deny/violation, FWC041 for each warn (FWC043 for the bundled
    management-set warning), minus the waived ones; `done` is the policy's review when the
    caller has it already."""
    loaded = _load(options)
    modules = [m for m in loaded.modules if not _is_test_file(m)]
    wanted = gate_rules(modules)
    if not wanted:
        return []
    doc = policy_doc(policy, done or review(policy))
    values = _evaluate(options, modules, json.loads(loaded.data), doc, wanted)
    findings: list[Finding] = []
    by_name = {rule.name: rule for rule in policy.rules}
    for namespace, rules in values.items():
        waivers = _waivers(rules.get("exception"))
        for rule_name, value in rules.items():
            kind = rule_name.split("_", 1)[0]
            if rule_name == "exception":
                continue
            suffix = rule_name[len(kind) + 1 :]
            for item in _items(value):
                message, target = _message(item, f"data.{namespace}.{rule_name}")
                if kind != "warn" and _waived(waivers, suffix, target):
                    continue
                where = by_name[target].location if target in by_name else None
                findings.append(
                    Finding(
                        _WARN_IDS.get(rule_name, "FWC041") if kind == "warn" else "FWC040",
                        Severity.WARNING if kind == "warn" else Severity.ERROR,
                        message,
                        where or Location(policy.source_file, 1, 1),
                        target if target in by_name else None,
                        {"rego_rule": f"data.{namespace}.{rule_name}"},
                    )
                )
    return sorted(findings, key=Finding.sort_key)


# a bundled warning with an id of its own: FWC041 is any other `warn` rule's
_WARN_IDS = {"warn_management_set": "FWC043"}


def _items(value: Any) -> list[Any]:
    if value is None or value is False:
        return []
    if isinstance(value, list):
        return value
    return [value]


def _message(item: Any, source: str) -> tuple[str, str | None]:
    if isinstance(item, str):
        return item, None
    if isinstance(item, dict) and isinstance(item.get("msg"), str):
        target = item.get("rule")
        return item["msg"], target if isinstance(target, str) else None
    raise RegoError(f"{source} produced {json.dumps(item)}; expected a string or {{msg, rule}}")


# A waiver: (rule suffix, policy rule or None for every finding of that invariant).
Waiver = tuple[str, str | None]


def _waivers(value: Any) -> set[Waiver]:
    """conftest's `exception` entries (lists of names) plus {invariant, rule} objects."""
    out: set[Waiver] = set()
    for entry in _items(value):
        names = entry if isinstance(entry, list) else [entry]
        for name in names:
            if isinstance(name, str):
                out.add((name, None))
            elif isinstance(name, dict) and isinstance(name.get("invariant"), str):
                rule = name.get("rule")
                out.add((name["invariant"], rule if isinstance(rule, str) else None))
    return out


def _waived(waivers: set[Waiver], suffix: str, target: str | None) -> bool:
    return (suffix, None) in waivers or (target is not None and (suffix, target) in waivers)


def run_tests(options: RegoOptions) -> RegoTestReport:
    """Every `test_` rule of the loaded modules, evaluated without an input."""
    loaded = _load(options)
    modules = list(loaded.modules)
    data = json.loads(loaded.data)
    tests = [(m.package, r) for m in modules for r in m.rules if _TEST_RULE.fullmatch(r)]
    engine = _engine(options)
    try:
        if engine == "opa":
            outcomes = rego_opa.run_tests(modules, data)
        elif engine == "server":
            assert options.opa_url is not None
            outcomes = rego_server.run_tests(options.opa_url, modules, data, tests)
        else:
            outcomes = [(p, n, rego_regopy.run_test(modules, data, p, n)) for p, n in tests]
    except rego_regopy.EngineFailure as exc:
        raise RegoError(str(exc)) from None
    return RegoTestReport(
        [RegoTestResult(f"data.{p}.{n}", why is None, why or "") for p, n, why in outcomes]
    )
