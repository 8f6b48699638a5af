"""Loads packet case files (docs/testing-policies.md) into frames and expectations, with places.

Every problem with a case or a property is an FWC061 finding at it, not an exception.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fwc.compiler.oracle.evaluate import XDP_DROP, XDP_PASS
from fwc.compiler.oracle.frames import FrameError, build_frame, fields_from_mapping
from fwc.compiler.policy.findings import Finding, Location, error
from fwc.compiler.policy.ir import CT_STATES, Policy
from fwc.compiler.policy.source import Document, NodePath, load_file

EXPECTATIONS = {"allow": XDP_PASS, "pass": XDP_PASS, "deny": XDP_DROP, "drop": XDP_DROP}
CLASSES = ("default", "malformed", "non_ip")
CASE_KEYS = ("name", "packet", "frame", "truncate", "patch", "expect", "rule", "interface", "state")
TOP_KEYS = ("cases", "properties")


@dataclass(frozen=True)
class Case:
    """One packet and what the policy must do with it."""

    name: str
    frame: bytes
    expect: int  # XDP_PASS or XDP_DROP
    expect_word: str  # as written: allow, deny, pass or drop
    rule: str | None  # a rule name, "default", "malformed", "non_ip", or None: any
    location: Location
    rule_location: Location
    interface: str | None = None  # the ingress interface's name; None: one no pattern matches
    state: str = "new"  # the kernel's connection state for the packet, if it is tracked


def load_cases(
    path: str | Path, extra_keys: tuple[str, ...] = ()
) -> tuple[list[Case], list[Finding]]:
    """The cases of a file; `extra_keys` are top-level keys the caller reads itself."""
    doc, findings = load_file(path)
    if doc is None:
        return [], findings
    return cases_from_document(doc, extra_keys)


def cases_from_document(
    doc: Document, extra_keys: tuple[str, ...] = ()
) -> tuple[list[Case], list[Finding]]:
    value = doc.value
    shape = "a cases file is a mapping with a `cases:` list, a `properties:` list or both"
    if not isinstance(value, dict) or not any(k in value for k in TOP_KEYS):
        return [], [_bad(doc, (), shape)]
    if not isinstance(value.get("cases", []), list):
        return [], [_bad(doc, ("cases",), shape)]
    findings = [
        _bad(doc, (key,), f"unknown top-level key `{key}` (known: cases, properties)", key=True)
        for key in value
        if key not in TOP_KEYS and key not in extra_keys
    ]
    cases: list[Case] = []
    for index, raw in enumerate(value.get("cases", [])):
        case = _case(doc, index, raw, findings)
        if case is not None:
            cases.append(case)
    return cases, findings


def check_rule_names(cases: list[Case], policy: Policy) -> list[Finding]:
    """FWC061 for each case that expects a rule the policy does not have."""
    names = {r.name for r in policy.rules}
    findings = []
    for case in cases:
        if case.rule is not None and case.rule not in names and case.rule not in CLASSES:
            known = ", ".join([*sorted(names), *CLASSES])
            findings.append(
                error(
                    "FWC061",
                    f"case `{case.name}` expects rule `{case.rule}`, which policy "
                    f"`{policy.name}` does not have (known: {known})",
                    case.rule_location,
                )
            )
    return findings


def _bad(doc: Document, path: NodePath, message: str, key: bool = False) -> Finding:
    return error("FWC061", message, doc.key_where(path) if key else doc.where(path))


def _case(doc: Document, index: int, raw: Any, findings: list[Finding]) -> Case | None:
    path: NodePath = ("cases", index)
    if not isinstance(raw, dict):
        findings.append(_bad(doc, path, f"case #{index + 1} must be a mapping"))
        return None
    name = str(raw.get("name", f"case #{index + 1}"))
    before = len(findings)

    def bad(key: str, message: str) -> None:
        findings.append(_bad(doc, (*path, key) if key else path, f"case `{name}`: {message}"))

    for key in raw:
        if key not in CASE_KEYS:
            findings.append(
                _bad(
                    doc,
                    (*path, key),
                    f"case `{name}`: unknown key `{key}` (known: {', '.join(CASE_KEYS)})",
                    key=True,
                )
            )
    expect_word = str(raw.get("expect", "")).lower()
    if expect_word not in EXPECTATIONS:
        bad("expect" if "expect" in raw else "", "`expect` must be allow, deny, pass or drop")
    rule = raw.get("rule")
    if rule is not None and not isinstance(rule, str):
        bad("rule", "`rule` must be a rule name or default, malformed, non_ip")
    interface = raw.get("interface")
    if interface is not None and (not isinstance(interface, str) or not interface):
        bad("interface", "`interface` must be an interface name")
    state = raw.get("state", "new")
    if not isinstance(state, str) or state not in CT_STATES:
        bad("state", f"`state` must be one of {', '.join(CT_STATES)}, not {state!r}")
    frame = _frame(raw, bad)
    if frame is None or len(findings) > before:
        return None
    return Case(
        name=name,
        frame=frame,
        expect=EXPECTATIONS[expect_word],
        expect_word=expect_word,
        rule=rule,
        location=doc.where(path),
        rule_location=doc.where((*path, "rule")),
        interface=interface,
        state=str(state),
    )


def _frame(raw: dict[str, Any], bad: Callable[[str, str], None]) -> bytes | None:
    if ("packet" in raw) == ("frame" in raw):
        bad("", "give exactly one of `packet` (fields) and `frame` (hex bytes)")
        return None
    if "frame" in raw:
        frame = _hex(raw["frame"])
        if frame is None:
            bad("frame", "`frame` must be a string of hex bytes")
            return None
    else:
        packet = raw["packet"]
        if not isinstance(packet, dict):
            bad("packet", "`packet` must be a mapping of packet fields")
            return None
        try:
            frame = build_frame(fields_from_mapping(packet))
        except FrameError as exc:
            bad("packet", str(exc))
            return None
    out = bytearray(frame)
    patch = raw.get("patch", {})
    if not isinstance(patch, dict):
        bad("patch", "`patch` must map byte offsets to hex bytes")
        return None
    for key, text in patch.items():
        data = _hex(text)
        if not str(key).isdigit() or data is None:
            bad("patch", f"`patch` entry {key}: {text!r} is not a byte offset and hex bytes")
            return None
        offset = int(str(key))
        if offset + len(data) > len(out):
            out.extend(bytes(offset + len(data) - len(out)))
        out[offset : offset + len(data)] = data
    truncate = raw.get("truncate")
    if truncate is not None:
        if isinstance(truncate, bool) or not isinstance(truncate, int) or truncate < 0:
            bad("truncate", "`truncate` must be a byte count")
            return None
        del out[truncate:]
    return bytes(out)


def _hex(value: object) -> bytes | None:
    if not isinstance(value, str):
        return None
    try:
        return bytes.fromhex("".join(value.split()))
    except ValueError:
        return None
