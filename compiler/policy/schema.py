"""Schema validation of a loaded policy: each JSON Schema error as a finding in place."""

from __future__ import annotations

import datetime
import difflib
import functools
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
from jsonschema.exceptions import ValidationError
from jsonschema.protocols import Validator

from fwc.compiler.policy.findings import Finding, error
from fwc.compiler.policy.source import Document, NodePath

SCHEMA_PATH = Path(__file__).parent / "policy.schema.json"

# JSON Schema keyword -> finding id.
_IDS = {
    "additionalProperties": "FWC010",
    "type": "FWC011",
    "required": "FWC012",
    "minimum": "FWC013",
    "maximum": "FWC013",
    "pattern": "FWC013",
    "minLength": "FWC013",
    "maxLength": "FWC013",
    "enum": "FWC014",
    "const": "FWC014",
}

_TYPE_WORDS = {
    "object": "a mapping",
    "array": "a list",
    "string": "a string",
    "integer": "an integer",
    "boolean": "true or false",
}


def schema_text() -> str:
    """The published schema, as shipped with the package."""
    return SCHEMA_PATH.read_text(encoding="utf-8")


@functools.cache
def schema() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(schema_text())
    return loaded


@functools.cache
def validator() -> Validator:
    """The one validator of the process (building it compiles every $ref and pattern):
    Draft 2020-12, except that 10.0 is no integer, or floats would reach the IR."""
    types = jsonschema.Draft202012Validator.TYPE_CHECKER.redefine(
        "integer", lambda _checker, value: isinstance(value, int) and not isinstance(value, bool)
    )
    strict = jsonschema.validators.extend(  # type: ignore[no-untyped-call]
        jsonschema.Draft202012Validator, type_checker=types
    )
    v: Validator = strict(schema())
    return v


def validate(doc: Document) -> list[Finding]:
    """Every schema error of `doc`, each as a finding at the offending key or value."""
    return validate_paths(doc)[0]


def validate_paths(doc: Document) -> tuple[list[Finding], list[NodePath]]:
    """`validate`, and the path of every value that breaks the schema (for `readable`)."""
    findings: list[Finding] = []
    paths: list[NodePath] = []
    value, kept = _thinned(doc.value)
    for err in validator().iter_errors(value):
        at: NodePath = _restored(tuple(err.absolute_path), kept)
        path = at
        if "propertyNames" in err.relative_schema_path:
            path = (*path, str(err.instance))  # the badly named key, not its whole mapping
        paths.append(path)
        findings.extend(_explain(doc, err, at))
    return findings, paths


# A set longer than this is checked entry by entry in Python first: only the entries that
# are not plainly valid go through the validator, whose per-item cost dominates at 1M.
LARGE_SET = 256


def _plain_entry(entry: object) -> bool:
    """Whether `entry` is valid by `$defs/set_entry` (a non-empty string, or an integer port);
    anything else is left to the validator, which words the error."""
    kind = type(entry)
    if kind is str:
        return entry != ""
    return kind is int and 0 <= entry <= 65535  # type: ignore[operator]


def _thinned(value: Any) -> tuple[Any, dict[str, list[int]]]:
    """`value` with each large set reduced to its entries that are not plainly valid, and
    for each such set the original index of every entry kept."""
    sets = value.get("sets") if isinstance(value, dict) else None
    if not isinstance(sets, dict):
        return value, {}
    kept: dict[str, list[int]] = {}
    thin: dict[str, Any] = dict(sets)
    for name, entries in sets.items():
        if isinstance(entries, list) and len(entries) > LARGE_SET:
            kept[name] = [i for i, e in enumerate(entries) if not _plain_entry(e)]
            thin[name] = [entries[i] for i in kept[name]]
    return ({**value, "sets": thin}, kept) if kept else (value, kept)


def _restored(path: NodePath, kept: dict[str, list[int]]) -> NodePath:
    """An error path in the thinned document as the path in the original."""
    if len(path) >= 3 and path[0] == "sets" and path[1] in kept and isinstance(path[2], int):
        return (*path[:2], kept[str(path[1])][path[2]], *path[3:])
    return path


def describe_type(value: object) -> str:
    """How a user would name the YAML value they wrote."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a number with a fraction"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, datetime.datetime):
        return "a timestamp"
    if isinstance(value, datetime.date):
        return "a date"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, bytes):
        return "binary data"
    return type(value).__name__


def _rule_name(doc: Document, path: NodePath) -> str | None:
    if len(path) >= 2 and path[0] == "rules" and isinstance(path[1], int):
        rules = doc.value.get("rules") if isinstance(doc.value, dict) else None
        if isinstance(rules, list) and path[1] < len(rules) and isinstance(rules[path[1]], dict):
            name = rules[path[1]].get("name")
            if isinstance(name, str):
                return name
    return None


def _subject(doc: Document, path: NodePath) -> str:
    """The user's name for the thing at `path`: "`priority` of rule `allow_ssh`"."""
    if not path:
        return "the policy"
    if path[0] == "rules" and len(path) >= 2 and isinstance(path[1], int):
        name = _rule_name(doc, path)
        owner = f"rule `{name}`" if name else f"rule #{path[1] + 1}"
        rest = path[2:]
        if not rest:
            return owner
        return f"`{_dotted(rest)}` of {owner}"
    return f"`{_dotted(path)}`"


def _dotted(path: NodePath) -> str:
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


def _short(value: object) -> str:
    text = repr(value) if isinstance(value, str) else str(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _explain(doc: Document, err: ValidationError, path: NodePath) -> Iterator[Finding]:
    """`err` as findings; `path` is where it is in the user's document."""
    # jsonschema types these as "maybe unset"; on a reported error they are set.
    instance: Any = err.instance
    wanted: Any = err.validator_value
    where_schema: Any = err.schema
    rule = _rule_name(doc, path)
    kind = str(err.validator)
    fid = _IDS.get(kind, "FWC015")
    subject = _subject(doc, path)
    here = doc.where(path)
    if kind == "additionalProperties":
        known = sorted(where_schema.get("properties", {}))
        extra = [k for k in instance if k not in known]
        for key in extra:
            hint = difflib.get_close_matches(str(key), known, n=1)
            tip = f"; did you mean `{hint[0]}`?" if hint else f" (known keys: {', '.join(known)})"
            yield error(
                fid, f"unknown key `{key}` in {subject}{tip}", doc.key_where((*path, key)), rule
            )
        return
    if "propertyNames" in err.relative_schema_path:
        key = str(instance)
        yield error(
            fid,
            f"set name `{key}` is not valid (letters, digits and _, not starting with a digit)",
            doc.key_where((*path, key)),
            rule,
        )
        return
    if kind == "required":
        missing = wanted
        names = [k for k in missing if k not in instance]
        for key in names:
            yield error(fid, f"{subject} is missing the required key `{key}`", here, rule)
        return
    if kind == "type":
        words = [_TYPE_WORDS.get(w, w) for w in ([wanted] if isinstance(wanted, str) else wanted)]
        yield error(
            fid,
            f"{subject} must be {' or '.join(words)}, not {describe_type(instance)}"
            f" ({_short(instance)})",
            here,
            rule,
        )
        return
    if kind in ("enum", "const"):
        choices = wanted if kind == "enum" else [wanted]
        shown = ", ".join(str(c) for c in dict.fromkeys(str(c) for c in choices))
        lowered = {str(c).lower(): str(c) for c in choices}
        close = difflib.get_close_matches(str(instance).lower(), list(lowered), n=1)
        hint = [lowered[c] for c in close]
        tip = f"; did you mean `{hint[0]}`?" if hint else ""
        yield error(
            fid, f"{subject} must be one of {shown}, not {_short(instance)}{tip}", here, rule
        )
        return
    if path == ("name",) and kind == "pattern":
        fid = "FWC033"
    yield error(fid, f"{subject}: {_range_message(err)}", here, rule)


def _range_message(err: ValidationError) -> str:
    kind = str(err.validator)
    value = err.instance
    limit = err.validator_value
    if kind == "minimum":
        return f"{value} is below the minimum {limit}"
    if kind == "maximum":
        return f"{value} is above the maximum {limit}"
    if kind == "minLength":
        return "must not be empty"
    if kind == "maxLength":
        return f"is longer than {limit} characters"
    if kind == "pattern":
        return f"{_short(value)} is badly formed (expected {_pattern_words(str(limit))})"
    return err.message


def _pattern_words(pattern: str) -> str:
    if pattern.startswith("^[A-Za-z_]"):
        return "letters, digits and _, starting with a letter or _, up to 63 long"
    if pattern.startswith("^[a-z0-9]"):
        return "lowercase letters, digits, _ and -, starting with a letter or digit, up to 48 long"
    return f"text matching {pattern}"
