"""The manifest's one codec: typed Manifest <-> canonical JSON bytes, checked by the schema."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from fwc.artifact import schema
from fwc.artifact.ifclass import InterfaceClassTable
from fwc.artifact.layout import FORMAT, RECORDS
from fwc.artifact.manifest import (
    CompilerInfo,
    Counters,
    DirtyMap,
    Interfaces,
    LoaderRecord,
    Manifest,
    MapEntry,
    PolicyInfo,
    ProgramEntry,
    RuleTable,
    SeedEntry,
    SetChange,
    SetEntry,
    SetTrie,
    SlotTable,
    TrieUse,
)


class ManifestError(ValueError):
    """The bytes are not a manifest of this format; the message is one line."""


def encode(manifest: Manifest) -> bytes:
    """The canonical bytes: sorted keys, no optional whitespace, UTF-8."""
    return json.dumps(
        to_json(manifest), sort_keys=True, separators=(",", ":"), ensure_ascii=False
    ).encode()


def decode(raw: bytes, upgrade: bool = False) -> Manifest:
    """The manifest in `raw`; `upgrade` also reads format 1 (as an older fw-load pinned it)."""
    try:
        document = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ManifestError(f"manifest is not valid UTF-8 JSON ({exc})") from exc
    except RecursionError:
        raise ManifestError("manifest nests too deeply to be read") from None
    except ValueError as exc:  # an integer of more digits than Python converts
        raise ManifestError(f"manifest holds a value that cannot be read ({exc})") from None
    if not isinstance(document, dict):
        raise ManifestError("manifest is not a JSON object")
    if upgrade:
        document = _upgrade(document)
    version = document.get("format")
    if version != FORMAT:
        raise ManifestError(
            f"manifest format {version!r} is not supported (this fw-load reads format {FORMAT}):"
            " compile the policy again with the fwc of this release"
        )
    try:
        error = schema.first_error(document)
    except RecursionError:
        raise ManifestError("manifest nests too deeply to be read") from None
    if error is not None:
        raise ManifestError(f"manifest {error}")
    return from_json(document)


def to_json(m: Manifest) -> dict[str, Any]:
    """The manifest as the JSON object it is encoded as (docs/artifact.md)."""
    policy, compiler, program = m.policy, m.compiler, m.program
    out: dict[str, Any] = {
        "format": m.format,
        "policy": {
            "name": policy.name,
            "sha256": policy.sha256,
            "default_action": policy.default_action,
            "interfaces": {
                "include": list(policy.interfaces.include),
                "exclude": list(policy.interfaces.exclude),
            },
        },
        "compiler": {"name": compiler.name, "version": compiler.version, "clang": compiler.clang},
        "strategy": m.strategy,
        "dry_run": m.dry_run,
        "log_rate": m.log_rate,
        "rate_limit_buckets": m.rate_limit_buckets,
        "conntrack": m.conntrack,
        "program": {
            "name": program.name,
            "section": program.section,
            "insn_count": program.insn_count,
        },
        "rules": {field: list(getattr(m.rules, field)) for field in schema.RULE_FIELDS},
        "counters": {
            "map": m.counters.map,
            "slots": {
                field: list(getattr(m.counters.slots, field)) for field in schema.SLOT_FIELDS
            },
        },
        "maps": [vars(entry).copy() for entry in m.maps],
        "seeds": [vars(entry).copy() for entry in m.seeds],
    }
    if m.interface_classes is not None:
        table = m.interface_classes
        out["interface_classes"] = {
            "map": table.map,
            "patterns": list(table.patterns),
            "classes": [list(c) for c in table.classes],
        }
    if m.sets:
        out["sets"] = [
            {
                "name": s.name,
                "refused": s.refused,
                "members": s.members,
                "tries": [
                    {"table": t.table, "add": list(t.add), "remove": list(t.remove)}
                    for t in s.tries
                ],
            }
            for s in m.sets
        ]
    if m.fw_load is not None:
        record = m.fw_load
        out["fw_load"] = {
            k: v
            for k, v in vars(record).items()
            if v is not None and k not in ("sets", "tries", "set_changes", "dirty")
        }
        if record.sets:
            out["fw_load"]["sets"] = [vars(c).copy() for c in record.sets]
        if record.tries:
            out["fw_load"]["tries"] = [vars(t).copy() for t in record.tries]
        if record.set_changes:
            out["fw_load"]["set_changes"] = record.set_changes
        if record.dirty:
            out["fw_load"]["dirty"] = {d.map: list(d.ranges) for d in record.dirty}
    return out


def from_json(d: dict[str, Any]) -> Manifest:
    """The typed manifest of a JSON object the schema accepts; ManifestError on a bad column."""
    policy, compiler, program = d["policy"], d["compiler"], d["program"]
    interfaces = policy.get("interfaces", {})
    record = d.get("fw_load")
    table = d.get("interface_classes")
    return Manifest(
        format=d["format"],
        policy=PolicyInfo(
            name=policy["name"],
            sha256=policy["sha256"],
            default_action=policy.get("default_action", ""),
            interfaces=Interfaces(
                tuple(interfaces.get("include", ())), tuple(interfaces.get("exclude", ()))
            ),
        ),
        compiler=CompilerInfo(
            version=compiler["version"],
            name=compiler.get("name", ""),
            clang=compiler.get("clang", ""),
        ),
        strategy=d["strategy"],
        dry_run=d["dry_run"],
        log_rate=d["log_rate"],
        rate_limit_buckets=d.get("rate_limit_buckets", 0),
        conntrack=d.get("conntrack", False),
        program=ProgramEntry(program["name"], program["section"], program["insn_count"]),
        rules=RuleTable(*_table("$.rules", d["rules"], _RULE_COLUMNS)),
        counters=Counters(
            d["counters"]["map"],
            SlotTable(*_table("$.counters.slots", d["counters"]["slots"], _SLOT_COLUMNS)),
        ),
        maps=tuple(_map(m) for m in d["maps"]),
        seeds=tuple(_seed(s) for s in d["seeds"]),
        fw_load=None if record is None else _record(record),
        interface_classes=None if table is None else _interface_classes(table),
        sets=tuple(_set(s) for s in d.get("sets", ())),
    )


def _set(s: dict[str, Any]) -> SetEntry:
    return SetEntry(
        s["name"],
        s.get("refused", ""),
        s.get("members", ""),
        tuple(SetTrie(t["table"], tuple(t["add"]), tuple(t["remove"])) for t in s.get("tries", ())),
    )


def _interface_classes(t: dict[str, Any]) -> InterfaceClassTable:
    patterns = tuple(t["patterns"])
    classes = tuple(tuple(c) for c in t["classes"])
    if any(i >= len(patterns) for c in classes for i in c) or classes[:1] != ((),):
        raise ManifestError(
            "manifest $.interface_classes: a class names a pattern that is not listed, "
            "or class 0 is not the empty one"
        )
    return InterfaceClassTable(patterns, classes, t["map"])


def _map(m: dict[str, Any]) -> MapEntry:
    return MapEntry(m["name"], m["type"], m["key_size"], m["value_size"], m["max_entries"])


def _seed(s: dict[str, Any]) -> SeedEntry:
    return SeedEntry(
        s["map"], s["section"], s["key_size"], s["value_size"], s["count"], s.get("layout", RECORDS)
    )


def _record(r: dict[str, Any]) -> LoaderRecord:
    return LoaderRecord(
        r.get("program_sha256"),
        r.get("generation", 0),
        r.get("flipped_at"),
        r.get("artifact_sha256"),
        tuple(
            SetChange(c["name"], c["added"], c["removed"], c["members"]) for c in r.get("sets", ())
        ),
        tuple(TrieUse(t["table"], t["slots"], t["skips"]) for t in r.get("tries", ())),
        r.get("set_changes", 0),
        tuple(DirtyMap(m, tuple(ranges)) for m, ranges in sorted(r.get("dirty", {}).items())),
    )


Check = Callable[[list[Any]], str | None]


def _integers(column: list[Any]) -> str | None:
    # json.loads gives exact ints (and bools, which are not integers here)
    if set(map(type, column)) - {int}:
        return _first(column, lambda v: type(v) is int, "must be an integer")
    return None


def _counts(column: list[Any]) -> str | None:
    error = _integers(column)
    if error is None and column and min(column) < 0:
        return _first(column, lambda v: v >= 0, "must be an integer >= 0")
    return error


def _names(column: list[Any]) -> str | None:
    # a join fails on anything but strings (json.loads makes no str subclass)
    try:
        "".join(column)
    except TypeError:
        return _first(column, lambda v: isinstance(v, str), "must be a string")
    if "" in column:
        return _first(column, bool, "must be a non-empty string")
    return None


_RULE_COLUMNS: tuple[tuple[str, Check], ...] = (
    ("id", _counts),
    ("name", _names),
    ("priority", _integers),
    ("action", _names),
)
_SLOT_COLUMNS: tuple[tuple[str, Check], ...] = (("index", _counts), ("name", _names))


def _table(
    where: str, table: dict[str, list[Any]], columns: tuple[tuple[str, Check], ...]
) -> list[tuple[Any, ...]]:
    """The table's columns as tuples, each item checked column by column at C speed (a few ms
    at 10,000 rules); only a column that fails is walked item by item, to name the item."""
    if len({len(table[field]) for field, _ in columns}) > 1:
        raise ManifestError(f"manifest {where}: its columns differ in length")
    for field, check in columns:
        error = check(table[field])
        if error is not None:
            raise ManifestError(f"manifest {where}.{field}{error}")
    return [tuple(table[field]) for field, _ in columns]


def _first(column: list[Any], good: Callable[[Any], Any], message: str) -> str:
    index = next(i for i, value in enumerate(column) if not good(value))
    return f"[{index}]: {message}"


def _upgrade(document: dict[str, Any]) -> dict[str, Any]:
    """A format-1 manifest with its row tables turned into columns (format 2); any other as is.

    Rows that are not objects with every field are left alone: the schema then says so.
    """
    if document.get("format") != 1:
        return document
    out = dict(document)
    counters = document.get("counters")
    try:
        out["rules"] = _rows_to_columns(document.get("rules"), schema.RULE_FIELDS)
        if isinstance(counters, dict):
            slots = _rows_to_columns(counters.get("slots"), schema.SLOT_FIELDS)
            out["counters"] = {**counters, "slots": slots}
    except (TypeError, KeyError):
        return document
    out["format"] = FORMAT
    return out


def _rows_to_columns(rows: Any, fields: tuple[str, ...]) -> dict[str, list[Any]]:
    if not isinstance(rows, list):
        raise TypeError("rows are not a list")
    return {field: [row[field] for row in rows] for field in fields}
