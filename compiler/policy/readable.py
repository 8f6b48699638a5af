"""The part of a policy document that later checks can still read when the schema fails.

A value that breaks the schema is left out (a rule keeps its other keys), so normalize
and the semantic checks still report every other mistake in the same run.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from fwc.compiler.policy.source import Document, NodePath

# Stands in for a policy name that breaks the schema: normalize would otherwise fall back
# to the file name and report a missing name that is not missing.
_NAME_STAND_IN = "unreadable"


@dataclass(frozen=True)
class Readable:
    """`doc` without its broken values; `partial` holds the rules that lost a key, whose
    checks across keys (protocol and ports, action and rate) must not run."""

    doc: Document
    partial: frozenset[int]


def readable(doc: Document, broken: list[NodePath]) -> Readable:
    """`doc` with every value at or under a path of `broken` left out."""
    if not broken or not isinstance(doc.value, dict):
        return Readable(doc, frozenset())
    value: dict[str, Any] = dict(doc.value)
    rules = list(value["rules"]) if isinstance(value.get("rules"), list) else None
    partial: set[int] = set()
    for path in broken:
        if not path:
            continue  # the document as a whole (a missing or unknown key): nothing to drop
        key = path[0]
        if key == "rules" and rules is not None and len(path) >= 3:
            index = path[1]
            assert isinstance(index, int)
            rule = dict(rules[index])
            if path[2] != "name" or not isinstance(rule.get("name"), str):
                rule.pop(path[2], None)  # a badly formed name still names the rule
            rules[index] = rule
            partial.add(index)
        elif key == "sets" and len(path) >= 2 and isinstance(value.get("sets"), dict):
            # Declared but unreadable: a rule naming it is not told it is undefined.
            value["sets"] = {**value["sets"], str(path[1]): None}
        elif key == "name":
            value["name"] = _NAME_STAND_IN
        elif len(path) == 1 or key != "rules":
            value.pop(str(key), None)
    if rules is not None and "rules" in value:
        value["rules"] = rules
    return Readable(replace(doc, value=value), frozenset(partial))
