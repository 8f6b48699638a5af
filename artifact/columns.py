"""The manifest's two long tables, rules and counter slots, stored as columns (format 2).

Each table is an object of equal-length lists, one per field (docs/artifact.md). `upgrade`
turns a manifest of format 1 (one object per row), as an older fw-load pinned it, into this.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

RULE_FIELDS = ("id", "name", "priority", "action")
SLOT_FIELDS = ("index", "name")
# the fields that hold integers >= 0 (priority: any integer) and non-empty strings
_COUNTS = ("id", "index")
_INTEGERS = ("priority",)
_NAMES = ("name", "action")


def rules(manifest: Mapping[str, Any]) -> list[tuple[int, str, int, str]]:
    """(id, name, priority, action) of every rule, in id order."""
    table = manifest["rules"]
    return sorted(zip(*(table[field] for field in RULE_FIELDS), strict=True))


def slots(manifest: Mapping[str, Any]) -> list[tuple[int, str]]:
    """(index, name) of every counter slot, in index order."""
    table = manifest["counters"]["slots"]
    return sorted(zip(table["index"], table["name"], strict=True))


def table_error(table: Any, fields: tuple[str, ...]) -> str | None:
    """What is wrong with a column table (a JSON path suffix and a message), or None.

    The checks run column by column in C loops: a few ms at 10,000 rules. Only a table that
    fails is walked item by item, to name the first bad item.
    """
    if not isinstance(table, dict):
        return f": {_short(table)} is not of type 'object'"
    for field in fields:
        if field not in table:
            return f": {field!r} is a required property"
        if not isinstance(table[field], list):
            return f".{field}: {_short(table[field])} is not of type 'array'"
    lengths = {len(table[field]) for field in fields}
    if len(lengths) > 1:
        return ": its columns differ in length"
    for field in fields:
        column = table[field]
        if field in _COUNTS or field in _INTEGERS:
            # json.loads gives exact ints (and bools, which are not counts here)
            if set(map(type, column)) - {int}:
                return _first(field, column, lambda v: type(v) is int, "must be an integer")
            if field in _COUNTS and column and min(column) < 0:
                return _first(field, column, lambda v: v >= 0, "must be an integer >= 0")
        elif field in _NAMES:
            # a join fails on anything but strings (json.loads makes no str subclass)
            try:
                "".join(column)
            except TypeError:
                return _first(field, column, lambda v: isinstance(v, str), "must be a string")
            if "" in column:
                return _first(field, column, bool, "must be a non-empty string")
    return None


def _first(field: str, column: list[Any], good: Any, message: str) -> str:
    index = next(i for i, value in enumerate(column) if not good(value))
    return f".{field}[{index}]: {message}"


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def upgrade(manifest: dict[str, Any]) -> dict[str, Any]:
    """A format-1 manifest with its tables turned into columns (format 2); any other as is.

    Rows that are not objects with every field are left alone: the reader then says so.
    """
    if manifest.get("format") != 1:
        return manifest
    out = dict(manifest)
    counters = manifest.get("counters")
    try:
        out["rules"] = _columns(manifest.get("rules"), RULE_FIELDS)
        if isinstance(counters, dict):
            out["counters"] = {**counters, "slots": _columns(counters.get("slots"), SLOT_FIELDS)}
    except (TypeError, KeyError):
        return manifest
    out["format"] = 2
    return out


def _columns(rows: Any, fields: tuple[str, ...]) -> dict[str, list[Any]]:
    if not isinstance(rows, list):
        raise TypeError("rows are not a list")
    return {field: [row[field] for row in rows] for field in fields}
