"""The manifest's JSON schema, checked with jsonschema (docs/artifact.md).

The rule and counter-slot columns are arrays here, and their items are checked where the
codec turns them into typed columns: jsonschema walks an array item by item, about 300 ms
for the columns of 10,000 rules, three times what a whole live update may take.
"""

from __future__ import annotations

import functools
from typing import Any

import jsonschema

from fwc.artifact import names
from fwc.artifact.layout import LAYOUTS

_NAME = {"type": "string", "minLength": 1}
# a policy name and a map name become pin paths: whole-string patterns, no "/", "..", newline
_POLICY_NAME = {"type": "string", "pattern": names.SCHEMA_PATTERN}
_MAP_NAME = {
    "type": "string",
    "minLength": 1,
    "maxLength": 15,
    "pattern": "^[A-Za-z0-9_]+(?![\\s\\S])",
}
_COUNT = {"type": "integer", "minimum": 0}
_SHA256 = {"type": "string", "pattern": "^[0-9a-f]{64}(?![\\s\\S])"}
_ARRAY = {"type": "array"}


def _object(required: list[str], properties: dict[str, Any]) -> dict[str, Any]:
    return {"type": "object", "required": required, "properties": properties}


def _columns(fields: tuple[str, ...]) -> dict[str, Any]:
    return _object(list(fields), {field: _ARRAY for field in fields})


RULE_FIELDS = ("id", "name", "priority", "action")
SLOT_FIELDS = ("index", "name")
_STRINGS = {"type": "array", "items": {"type": "string"}}
# a set's class maps: per class index, a class index or -1
_CLASS_MAPS = {
    side: {"type": "array", "items": {"type": "integer", "minimum": -1}}
    for side in ("add", "remove")
}

SCHEMA: dict[str, Any] = _object(
    [
        "format",
        "policy",
        "compiler",
        "strategy",
        "dry_run",
        "log_rate",
        "program",
        "rules",
        "counters",
        "maps",
        "seeds",
    ],
    {
        "format": {"type": "integer"},
        "policy": _object(
            ["name", "sha256"],
            {
                "name": _POLICY_NAME,
                "sha256": _SHA256,
                "default_action": {"type": "string"},
                "interfaces": {
                    "type": "object",
                    "properties": {"include": _STRINGS, "exclude": _STRINGS},
                },
            },
        ),
        "compiler": _object(
            ["version"],
            {
                "name": {"type": "string"},
                "version": {"type": "string"},
                "clang": {"type": "string"},
            },
        ),
        "strategy": _NAME,
        "dry_run": {"type": "boolean"},
        "log_rate": _COUNT,
        "rate_limit_buckets": _COUNT,
        "conntrack": {"type": "boolean"},
        "program": _object(
            ["name", "section", "insn_count"],
            {"name": _NAME, "section": _NAME, "insn_count": _COUNT},
        ),
        "rules": _columns(RULE_FIELDS),
        "counters": _object(["map", "slots"], {"map": _MAP_NAME, "slots": _columns(SLOT_FIELDS)}),
        "maps": {
            "type": "array",
            "items": _object(
                ["name", "type", "key_size", "value_size", "max_entries"],
                {
                    "name": _MAP_NAME,
                    "type": _NAME,
                    "key_size": _COUNT,
                    "value_size": _COUNT,
                    "max_entries": _COUNT,
                },
            ),
        },
        "seeds": {
            "type": "array",
            "items": _object(
                ["map", "section", "key_size", "value_size", "count"],
                {
                    "map": _MAP_NAME,
                    "section": _NAME,
                    "key_size": {"type": "integer", "minimum": 1},
                    "value_size": {"type": "integer", "minimum": 1},
                    "count": _COUNT,
                    "layout": {"enum": list(LAYOUTS)},
                },
            ),
        },
        "interface_classes": _object(
            ["map", "patterns", "classes"],
            {
                "map": _MAP_NAME,
                "patterns": {"type": "array", "items": _NAME},
                "classes": {
                    "type": "array",
                    "minItems": 1,
                    "maxItems": 32,
                    "items": {"type": "array", "items": _COUNT},
                },
            },
        ),
        "sets": {
            "type": "array",
            "items": _object(
                ["name"],
                {
                    "name": _NAME,
                    "refused": {"type": "string"},
                    "members": {"type": "string"},
                    "tries": {
                        "type": "array",
                        "items": _object(
                            ["table", "add", "remove"],
                            {"table": {"enum": ["s4", "s6", "d4", "d6"]}, **_CLASS_MAPS},
                        ),
                    },
                },
            ),
        },
        "fw_load": {
            "type": "object",
            "properties": {
                "program_sha256": {"type": "string"},
                "generation": {"enum": [0, 1]},
                "flipped_at": _COUNT,
                "artifact_sha256": _SHA256,
                "sets": {
                    "type": "array",
                    "items": _object(
                        ["name", "added", "removed", "members"],
                        {"name": _NAME, "added": _COUNT, "removed": _COUNT, "members": _COUNT},
                    ),
                },
                "tries": {
                    "type": "array",
                    "items": _object(
                        ["table", "slots", "skips"],
                        {"table": _NAME, "slots": _COUNT, "skips": _COUNT},
                    ),
                },
                "set_changes": _COUNT,
                "dirty": {
                    "type": "object",
                    "additionalProperties": {"type": "array", "items": _COUNT},
                },
            },
        },
    },
)


@functools.cache
def _validator() -> jsonschema.protocols.Validator:
    return jsonschema.Draft202012Validator(SCHEMA)


def first_error(document: Any) -> str | None:
    """The schema's best error about `document` ("$.path: message"), or None when it conforms."""
    error = jsonschema.exceptions.best_match(_validator().iter_errors(document))
    return None if error is None else f"{error.json_path}: {error.message}"
