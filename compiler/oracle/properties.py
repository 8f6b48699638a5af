"""Loads the `properties:` of a cases file (docs/testing-policies.md) into claims over regions.

A property's `match` has the keys of a policy rule's match and is checked by the same
JSON Schema definitions; set references (`$name`) name the policy's sets. Every problem
is an FWC061 finding at the property, not an exception.
"""

from __future__ import annotations

import functools
from typing import Any, TypeVar

import jsonschema
from jsonschema.exceptions import ValidationError
from jsonschema.protocols import Validator

from fwc.compiler.analysis.match import Selection
from fwc.compiler.analysis.prove import Property, selects_nothing
from fwc.compiler.analysis.space import ALL_STATES
from fwc.compiler.policy import schema as policy_schema
from fwc.compiler.policy.findings import Finding, error
from fwc.compiler.policy.ir import (
    CT_STATES,
    Action,
    AddressRange,
    Policy,
    PortRange,
    Protocol,
)
from fwc.compiler.policy.normalize import parse_address, parse_port, parse_tcp_flags
from fwc.compiler.policy.source import Document, NodePath

MATCH_KEYS = (
    "protocol",
    "source_cidrs",
    "destination_cidrs",
    "source_ports",
    "destination_ports",
    "tcp_flags",
    "icmp_types",
    "state",
)
ACTIONS = tuple(a.value for a in Action)
_TYPE_WORDS = {
    "object": "a mapping",
    "array": "a list",
    "string": "a string",
    "integer": "an integer",
}


@functools.cache
def properties_schema() -> dict[str, Any]:
    """The JSON Schema of a `properties:` list: the match keys are the policy rule's own."""
    policy = policy_schema.schema()
    rule = policy["$defs"]["rule"]["properties"]
    verdict = {"enum": list(ACTIONS), "description": "allow, deny or rate_limit"}
    prop = {
        "type": "object",
        "additionalProperties": False,
        "required": ["name", "match"],
        "properties": {
            "name": {"type": "string", "minLength": 1},
            "match": {
                "type": "object",
                "additionalProperties": False,
                "properties": {key: rule[key] for key in MATCH_KEYS},
            },
            "expect": {**verdict, "description": "every packet of the match gets this action"},
            "expect_not": {**verdict, "description": "no packet of the match gets this action"},
        },
        "oneOf": [{"required": ["expect"]}, {"required": ["expect_not"]}],
    }
    return {
        "$schema": policy["$schema"],
        "$defs": policy["$defs"],
        "type": "array",
        "items": prop,
    }


@functools.cache
def _validator() -> Validator:
    v: Validator = jsonschema.Draft202012Validator(properties_schema())
    return v


def properties_from_document(doc: Document, policy: Policy) -> tuple[list[Property], list[Finding]]:
    """The properties of a loaded cases file, their sets taken from `policy`."""
    value = doc.value
    if not isinstance(value, dict) or "properties" not in value:
        return [], []
    raw_list = value["properties"]
    findings: list[Finding] = []
    seen: set[tuple[object, ...]] = set()
    for err in _validator().iter_errors(raw_list):
        # One finding per place: a list item of the wrong type also fails `oneOf`.
        place = tuple(err.absolute_path)
        if place not in seen:
            seen.add(place)
            findings.append(_schema_finding(doc, err))
    if findings:
        return [], findings
    sets = dict(policy.sets)
    out: list[Property] = []
    for index, raw in enumerate(raw_list):
        prop = _Reader(doc, ("properties", index), raw, sets, findings).read()
        if prop is not None:
            out.append(prop)
    return out, findings


def _schema_finding(doc: Document, err: ValidationError) -> Finding:
    path: NodePath = ("properties", *err.absolute_path)
    items = doc.value["properties"]
    index = path[1] if len(path) > 1 and isinstance(path[1], int) else None
    name = (
        items[index].get("name") if index is not None and isinstance(items[index], dict) else None
    )
    who = f"property `{name}`" if name else f"property #{index + 1}" if index is not None else ""
    kind = str(err.validator)
    instance: Any = err.instance
    if kind == "additionalProperties":
        known = sorted(err.schema.get("properties", {}))  # type: ignore[union-attr]
        extra = [k for k in instance if k not in known]
        message = f"unknown key `{extra[0]}` (known: {', '.join(known)})"
        here = doc.key_where((*path, extra[0]))
    elif kind == "oneOf":
        message = "give exactly one of `expect` (every packet) and `expect_not` (no packet)"
        here = doc.where(path)
    elif kind == "enum":
        choices: Any = err.validator_value
        message = f"`{path[-1]}` must be one of {', '.join(map(str, choices))}"
        here = doc.where(path)
    elif kind == "type" and path == ("properties",):
        message = "`properties:` must be a list of properties"
        here = doc.key_where(path)
    elif kind == "type":
        field = ".".join(str(p) for p in path[2:])
        wanted = _TYPE_WORDS.get(str(err.validator_value), str(err.validator_value))
        subject = f"`{field}`" if field else "it"
        message = f"{subject} must be {wanted}, not {policy_schema.describe_type(instance)}"
        here = doc.where(path)
    else:
        field = ".".join(str(p) for p in path[2:])
        message = f"`{field}`: {err.message}" if field else err.message
        here = doc.where(path)
    return error("FWC061", f"{who}: {message}" if who else message, here)


class _Reader:
    """One schema-valid property made into a Property: CIDRs, ports and flags parsed."""

    def __init__(
        self,
        doc: Document,
        path: NodePath,
        raw: dict[str, Any],
        sets: dict[str, Any],
        findings: list[Finding],
    ) -> None:
        self.doc, self.path, self.raw, self.sets, self.findings = doc, path, raw, sets, findings
        self.name = str(raw["name"])

    def bad(self, where: NodePath, message: str) -> None:
        self.findings.append(
            error("FWC061", f"property `{self.name}`: {message}", self.doc.where(where))
        )

    def read(self) -> Property | None:
        before = len(self.findings)
        match: dict[str, Any] = self.raw["match"]
        at: NodePath = (*self.path, "match")
        flags_set = flags_clear = 0
        if "tcp_flags" in match:
            parsed = parse_tcp_flags(match["tcp_flags"])
            if isinstance(parsed, str):
                self.bad((*at, "tcp_flags"), parsed)
            else:
                flags_set, flags_clear = parsed
        selection = Selection(
            protocol=Protocol(match.get("protocol", "any")),
            sources=self.field(match, at, "source_cidrs", AddressRange),
            destinations=self.field(match, at, "destination_cidrs", AddressRange),
            source_ports=self.field(match, at, "source_ports", PortRange),
            destination_ports=self.field(match, at, "destination_ports", PortRange),
            tcp_flags_set=flags_set,
            tcp_flags_clear=flags_clear,
            icmp_types=tuple(match.get("icmp_types") or ()),
            states=sum(CT_STATES[str(s)] for s in dict.fromkeys(match.get("state") or ()))
            or ALL_STATES,
        )
        if len(self.findings) > before:
            return None
        if selects_nothing(selection):
            self.bad(at, "the match selects no packet (ports or flags that its protocol lacks?)")
            return None
        negated = "expect_not" in self.raw
        return Property(
            name=self.name,
            selection=selection,
            action=Action(self.raw["expect_not" if negated else "expect"]),
            negated=negated,
            location=self.doc.where(self.path),
        )

    def field(
        self, match: dict[str, Any], at: NodePath, key: str, kind: type[_T]
    ) -> tuple[_T, ...]:
        """One address or port field, `$set` references expanded; bad entries reported."""
        out: list[_T] = []
        for i, entry in enumerate(match.get(key) or ()):
            where = (*at, key, i)
            if isinstance(entry, str) and entry.startswith("$"):
                found = self.sets.get(entry[1:])
                if not found or not isinstance(found[0], kind):
                    self.bad(
                        where, f"`{entry}` is not a non-empty set of {_WORDS[kind]} in the policy"
                    )
                else:
                    out.extend(found)
                continue
            parsed = _parse(entry, kind)
            if parsed is None:
                self.bad(where, f"{entry!r} is not {_WHAT[kind]}")
            else:
                out.append(parsed)
        return tuple(out)


_T = TypeVar("_T", AddressRange, PortRange)
_WORDS = {AddressRange: "addresses", PortRange: "ports"}
_WHAT = {
    AddressRange: "an IPv4 or IPv6 address or CIDR",
    PortRange: "a port (0..65535) or a range 'lo-hi' with lo <= hi",
}


def _parse(entry: object, kind: type[_T]) -> _T | None:
    if kind is AddressRange:
        address = parse_address(str(entry))
        return None if address is None else address[0]  # type: ignore[return-value]
    return parse_port(entry)  # type: ignore[return-value]
