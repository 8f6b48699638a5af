"""Findings: what the gate reports, as values with a stable id and a place."""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field


class Severity(enum.Enum):
    ERROR = "error"
    WARNING = "warning"
    INFO = "info"


@dataclass(frozen=True, order=True)
class Location:
    """A place in a policy file; line and column are 1-based (0 when unknown)."""

    file: str
    line: int = 0
    column: int = 0

    def __str__(self) -> str:
        if self.line:
            return f"{self.file}:{self.line}:{self.column}"
        return self.file


# Every id the project emits, with a short title. Ids are stable: never reuse one.
CATALOG: dict[str, str] = {
    # loading
    "FWC001": "YAML syntax error",
    "FWC002": "file is not valid UTF-8",
    "FWC003": "duplicate key",
    "FWC004": "more than one YAML document",
    "FWC005": "input too large, too deep, or alias expansion too big",
    "FWC006": "empty policy file",
    "FWC007": "unsupported YAML construct",
    "FWC008": "file cannot be read",
    # schema
    "FWC010": "unknown key",
    "FWC011": "wrong type",
    "FWC012": "missing required key",
    "FWC013": "value out of range or badly formed",
    "FWC014": "value not one of the allowed choices",
    "FWC015": "schema violation",
    # semantics
    "FWC020": "duplicate rule name",
    "FWC021": "undefined set",
    "FWC022": "set mixes addresses and ports",
    "FWC023": "ports on a rule whose protocol has no ports",
    "FWC024": "tcp_flags on a non-tcp rule",
    "FWC025": "icmp_types on a tcp or udp rule",
    "FWC026": "rate_limit settings inconsistent with the action",
    "FWC027": "host bits set under the mask",
    "FWC028": "rules with equal priority",
    "FWC029": "invalid address or port",
    "FWC030": "rule is shadowed by earlier rules",
    "FWC031": "set used in the wrong kind of field",
    "FWC032": "invalid tcp_flags",
    "FWC033": "policy name invalid",
    "FWC034": "field names only empty sets",
    "FWC035": "rule is redundant",
    "FWC036": "rule asks for a state its packets never have",
    "FWC038": "invalid interface pattern",
    "FWC039": "rule names interfaces the policy never attaches to",
    # rego
    "FWC040": "organisation invariant violated (deny)",
    "FWC041": "organisation invariant warning (warn)",
    "FWC042": "rego test failed",
    "FWC043": "no management set: SSH reachability from management is not checked",
    # compile
    "FWC050": "feature not yet supported by the compiler",
    "FWC051": "policy too large for the chosen strategy",
    "FWC052": "the kernel verifier rejected the program",
    # fwc test
    "FWC060": "packet case failed",
    "FWC061": "packet case is invalid",
    "FWC062": "property does not hold",
    # fwc diff
    "FWC070": "packets newly allowed",
    "FWC071": "packets newly denied or rate limited",
    "FWC072": "packets logged differently",
    "FWC073": "packets counted by another rule",
}


@dataclass(frozen=True)
class Related:
    """A policy rule a finding names besides its own (the rules that shadow it, say)."""

    rule: str
    location: Location


@dataclass(frozen=True)
class Finding:
    id: str
    severity: Severity
    message: str
    location: Location
    rule: str | None = None
    extra: dict[str, str] = field(default_factory=dict, compare=False, hash=False)
    # A packet the finding is about, as the `packet:` of a `fwc test` case.
    example: Mapping[str, object] | None = field(default=None, compare=False, hash=False)
    related: tuple[Related, ...] = field(default=(), compare=False, hash=False)

    def __post_init__(self) -> None:
        if self.id not in CATALOG:
            raise ValueError(f"finding id {self.id} is not in the catalog")

    @property
    def title(self) -> str:
        return CATALOG[self.id]

    def sort_key(self) -> tuple[str, int, int, str]:
        return (self.location.file, self.location.line, self.location.column, self.id)


def error(id: str, message: str, location: Location, rule: str | None = None) -> Finding:
    return Finding(id, Severity.ERROR, message, location, rule)


def warning(id: str, message: str, location: Location, rule: str | None = None) -> Finding:
    return Finding(id, Severity.WARNING, message, location, rule)


def has_errors(findings: list[Finding]) -> bool:
    return any(f.severity is Severity.ERROR for f in findings)
