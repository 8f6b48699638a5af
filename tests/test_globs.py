"""Interface globs: the automaton equals fnmatch, and the classes are exactly those some name
realises (checked against every short name over the globs' alphabet)."""

from __future__ import annotations

import fnmatch
import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fwc.compiler.policy.globs import (
    MAX_NAME,
    Selection,
    matches,
    pattern_problem,
    realisable,
    signature,
)

PATTERN_ALPHABET = "ab*?[]!-"
NAME_ALPHABET = "ab-!]c"


@settings(max_examples=400, deadline=None)
@given(
    pattern=st.text(PATTERN_ALPHABET, min_size=1, max_size=7),
    name=st.text(NAME_ALPHABET, min_size=1, max_size=8),
)
def test_the_automaton_is_fnmatch(pattern: str, name: str) -> None:
    assert matches(name, pattern) is fnmatch.fnmatchcase(name, pattern)


def _brute(patterns: tuple[str, ...], selection: Selection, longest: int) -> set[tuple[int, ...]]:
    """Signatures of every name up to `longest` characters over the patterns' characters and
    one they do not name."""
    letters = sorted({c for p in patterns for c in p if c not in "*?[]!"} | {"z"})
    found = set()
    for n in range(1, longest + 1):
        for chars in itertools.product(letters, repeat=n):
            name = "".join(chars)
            if name not in (".", "..") and selection.attaches(name):
                found.add(signature(name, patterns))
    return found


@settings(max_examples=150, deadline=None)
@given(
    patterns=st.lists(st.text("ab.*?", min_size=1, max_size=3), min_size=1, max_size=3),
    include=st.lists(st.text("ab*", min_size=1, max_size=2), max_size=2),
    exclude=st.lists(st.text("ab*", min_size=1, max_size=2), max_size=1),
)
def test_realisable_classes_are_exact(
    patterns: list[str], include: list[str], exclude: list[str]
) -> None:
    selection = Selection(tuple(include), tuple(exclude))
    found = realisable(patterns, selection)
    # every class comes with a valid name of exactly that signature that is attached
    for members, name in found.items():
        assert 1 <= len(name) <= MAX_NAME and name not in (".", "..")
        assert selection.attaches(name)
        assert signature(name, patterns) == members
    # and no short name has a signature outside them (short names suffice for these globs)
    assert _brute(tuple(patterns), selection, 5) <= set(found)


@pytest.mark.parametrize(
    ("patterns", "include", "expected"),
    [
        (("eth0", "eth*"), (), {(): "a", (1,): "eth", (0, 1): "eth0"}),
        (("*",), (), {(0,): "a"}),
        (("lo",), (), {(): "a"}),  # loopback is not attached without an include naming it
        (("lo",), ("lo",), {(0,): "lo"}),
        (("wg*",), ("eth*",), {(): "eth"}),
        (("eth?",), ("eth*",), {(): "eth", (0,): "etha"}),
    ],
)
def test_realisable_examples(
    patterns: tuple[str, ...], include: tuple[str, ...], expected: dict[tuple[int, ...], str]
) -> None:
    assert realisable(patterns, Selection(include)) == expected


@pytest.mark.parametrize(
    ("pattern", "problem"),
    [
        ("eth0", None),
        ("e[0-9]*", None),
        ("fifteen-chars-x", None),
        ("sixteen-chars-xx", "longer than an interface name"),
        ("eth 0", "printable ASCII"),
        ("a/b", "printable ASCII"),
        ("a:b", "printable ASCII"),
        ("ethé", "printable ASCII"),
    ],
)
def test_pattern_problems(pattern: str, problem: str | None) -> None:
    found = pattern_problem(pattern)
    assert (found is None) if problem is None else (found is not None and problem in found)
