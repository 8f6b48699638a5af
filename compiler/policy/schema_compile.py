"""Compiles the subset of JSON Schema the policy schema uses into fast yes/no predicates.

jsonschema explains errors well but walks a 10,000-rule policy slowly. The gate asks
this predicate first and asks jsonschema only about the parts that fail, so the
schema file stays the single source of truth and clean policies pass quickly.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

Predicate = Callable[[Any], bool]

# Keywords this compiler understands; a schema using any other one is refused,
# so the predicate can never be more lenient than jsonschema.
_KNOWN = frozenset(
    {
        "$schema", "$id", "$ref", "$defs", "title", "description",
        "type", "properties", "additionalProperties", "required", "propertyNames",
        "items", "enum", "minimum", "maximum", "pattern", "minLength", "maxLength",
    }
)  # fmt: skip

_TYPES: dict[str, Predicate] = {
    "object": lambda v: isinstance(v, dict),
    "array": lambda v: isinstance(v, list),
    "string": lambda v: isinstance(v, str),
    "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "boolean": lambda v: isinstance(v, bool),
    "null": lambda v: v is None,
}


class UnsupportedSchema(ValueError):
    """The schema uses a keyword this compiler does not implement."""


def compile_schema(root: dict[str, Any], node: dict[str, Any] | None = None) -> Predicate:
    """A predicate that is true exactly when jsonschema (strict integers) accepts the value."""
    return _Compiler(root).compile(root if node is None else node)


def _same(a: Any, b: Any) -> bool:
    # JSON equality: true is not 1, and 1 equals 1.0.
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return bool(a == b)
    return type(a) is type(b) and bool(a == b)


# A 10,000-rule policy runs these a few hundred thousand times: plain loops and the
# common arities spelled out, no generator per call (hence the noqa on SIM110).


def _all_of(checks: list[Predicate]) -> Predicate:
    if len(checks) == 1:
        return checks[0]
    if len(checks) == 2:
        first, second = checks
        return lambda v: first(v) and second(v)

    def every(v: Any) -> bool:
        for check in checks:  # noqa: SIM110
            if not check(v):
                return False
        return True

    return every


def _any_of(tests: list[Predicate]) -> Predicate:
    if len(tests) == 1:
        return tests[0]

    def some(v: Any) -> bool:
        for test in tests:  # noqa: SIM110
            if test(v):
                return True
        return False

    return some


def _enum(choices: list[Any]) -> Predicate:
    # Strings are the usual case and compare by plain equality; the rest go through _same.
    strings = frozenset(c for c in choices if isinstance(c, str))
    others = [c for c in choices if not isinstance(c, str)]

    def member(v: Any) -> bool:
        if type(v) is str:
            return v in strings
        for choice in others:  # noqa: SIM110
            if _same(v, choice):
                return True
        return False

    return member


def _items(item: Predicate) -> Predicate:
    def each(v: Any) -> bool:
        if not isinstance(v, list):
            return True
        for x in v:  # noqa: SIM110
            if not item(x):
                return False
        return True

    return each


class _Compiler:
    def __init__(self, root: dict[str, Any]) -> None:
        self.root = root
        self.refs: dict[str, Predicate] = {}

    def ref(self, target: str) -> Predicate:
        if target not in self.refs:
            if not target.startswith("#/$defs/"):
                raise UnsupportedSchema(f"$ref {target}")
            node = self.root["$defs"][target.removeprefix("#/$defs/")]
            slot: list[Predicate] = []
            # Bound before compiling, so a recursive $ref finds itself.
            self.refs[target] = lambda v: slot[0](v)
            slot.append(self.compile(node))
            self.refs[target] = slot[0]
        return self.refs[target]

    def compile(self, node: Any) -> Predicate:
        if node is True or node == {}:
            return lambda v: True
        if node is False:
            return lambda v: False
        unknown = set(node) - _KNOWN
        if unknown:
            raise UnsupportedSchema(", ".join(sorted(unknown)))
        checks: list[Predicate] = []
        if "$ref" in node:
            checks.append(self.ref(node["$ref"]))
        if "type" in node:
            names = [node["type"]] if isinstance(node["type"], str) else node["type"]
            checks.append(_any_of([_TYPES[n] for n in names]))
        if "enum" in node:
            checks.append(_enum(list(node["enum"])))
        checks.extend(self.scalars(node))
        checks.extend(self.objects(node))
        if "items" in node:
            checks.append(_items(self.compile(node["items"])))
        return _all_of(checks)

    def scalars(self, node: dict[str, Any]) -> list[Predicate]:
        checks: list[Predicate] = []

        def number(v: Any) -> bool:
            return isinstance(v, (int, float)) and not isinstance(v, bool)

        if "minimum" in node:
            low = node["minimum"]
            checks.append(lambda v: not number(v) or v >= low)
        if "maximum" in node:
            high = node["maximum"]
            checks.append(lambda v: not number(v) or v <= high)
        if "minLength" in node:
            shortest = node["minLength"]
            checks.append(lambda v: not isinstance(v, str) or len(v) >= shortest)
        if "maxLength" in node:
            longest = node["maxLength"]
            checks.append(lambda v: not isinstance(v, str) or len(v) <= longest)
        if "pattern" in node:
            search = re.compile(node["pattern"]).search
            checks.append(lambda v: not isinstance(v, str) or search(v) is not None)
        return checks

    def objects(self, node: dict[str, Any]) -> list[Predicate]:
        checks: list[Predicate] = []
        props = {k: self.compile(s) for k, s in node.get("properties", {}).items()}
        extra_schema = node.get("additionalProperties", True)
        extra = None if extra_schema is True else self.compile(extra_schema)
        required = tuple(node.get("required", ()))
        names = self.compile(node["propertyNames"]) if "propertyNames" in node else None
        if not props and extra is None and not required and names is None:
            return checks

        def check_object(v: Any) -> bool:
            if not isinstance(v, dict):
                return True
            for key in required:
                if key not in v:
                    return False
            for key, value in v.items():
                if names is not None and not names(key):
                    return False
                test = props.get(key, extra)
                if test is not None and not test(value):
                    return False
            return True

        checks.append(check_object)
        return checks
