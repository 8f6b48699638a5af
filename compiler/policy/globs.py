"""Interface-name globs as automata: which sets of patterns some interface name matches exactly.

A rule's `interfaces` patterns split interface names into classes: two names are alike when
they match the same patterns. Only the classes some valid name realises exist, and only
those of names the policy attaches to matter (docs/semantics.md, Interfaces). The globs are
the shell globs of `fnmatch.fnmatchcase`; tests hold `matches` equal to it.
"""

from __future__ import annotations

import fnmatch
import functools
import string
from collections.abc import Sequence
from dataclasses import dataclass

# Linux interface names: 1..15 bytes, no "/", ":" or whitespace, not "." or "..".
MAX_NAME = 15
PATTERN_CHARS = frozenset(string.printable) - frozenset("/:" + string.whitespace)
# A character no pattern may name: it stands for every character outside PATTERN_CHARS.
_FOREIGN = "\u00e9"
LOOPBACK = "lo"

_STAR = "*"
_ANY = "?"


@dataclass(frozen=True)
class _Atom:
    """One position of a glob: `*`, `?`, one literal character, or a bracket expression."""

    kind: str  # "*", "?", "char", "set"
    text: str  # the character, or the bracket expression with its brackets

    def accepts(self, c: str) -> bool:
        if self.kind in (_STAR, _ANY):
            return True
        if self.kind == "char":
            return c == self.text
        return fnmatch.fnmatchcase(c, self.text)


def pattern_problem(pattern: str) -> str | None:
    """Why `pattern` is not an interface glob fwc accepts, or None."""
    bad = sorted(set(pattern) - PATTERN_CHARS)
    if bad:
        shown = " ".join(repr(c) for c in bad)
        return (
            f"interface pattern {pattern!r} holds {shown}; a pattern is printable ASCII "
            "without '/', ':' or spaces"
        )
    if not pattern:
        return "an interface pattern is empty"
    if min_length(pattern) > MAX_NAME:
        return f"interface pattern {pattern!r} is longer than an interface name ({MAX_NAME})"
    return None


@functools.cache
def atoms(pattern: str) -> tuple[_Atom, ...]:
    """The positions of a glob, read as fnmatch reads it (an unclosed `[` is a character)."""
    out: list[_Atom] = []
    i, n = 0, len(pattern)
    while i < n:
        c = pattern[i]
        i += 1
        if c == "*":
            if not out or out[-1].kind != _STAR:
                out.append(_Atom(_STAR, c))
        elif c == "?":
            out.append(_Atom(_ANY, c))
        elif c == "[":
            j = i
            if j < n and pattern[j] == "!":
                j += 1
            if j < n and pattern[j] == "]":
                j += 1
            while j < n and pattern[j] != "]":
                j += 1
            if j >= n:
                out.append(_Atom("char", c))
            else:
                out.append(_Atom("set", pattern[i - 1 : j + 1]))
                i = j + 1
        else:
            out.append(_Atom("char", c))
    return tuple(out)


def min_length(pattern: str) -> int:
    return sum(1 for a in atoms(pattern) if a.kind != _STAR)


def _closure(positions: frozenset[int], parts: tuple[_Atom, ...]) -> frozenset[int]:
    """Positions with every `*` that may match nothing skipped."""
    out = set(positions)
    for p in sorted(positions):
        while p < len(parts) and parts[p].kind == _STAR:
            p += 1
            out.add(p)
    return frozenset(out)


def _step(positions: frozenset[int], parts: tuple[_Atom, ...], c: str) -> frozenset[int]:
    nxt: set[int] = set()
    for p in positions:
        if p < len(parts) and parts[p].accepts(c):
            nxt.add(p if parts[p].kind == _STAR else p + 1)
    return _closure(frozenset(nxt), parts)


def matches(name: str, pattern: str) -> bool:
    """Whether `name` matches `pattern`: the automaton, equal to fnmatch.fnmatchcase."""
    parts = atoms(pattern)
    positions = _closure(frozenset({0}), parts)
    for c in name:
        positions = _step(positions, parts, c)
    return len(parts) in positions


# Characters an example name prefers, most familiar first.
_PREFERRED = string.ascii_lowercase + string.digits + string.ascii_uppercase + "-_."


def _alphabet(patterns: Sequence[str]) -> list[str]:
    """One character per class of characters that every pattern treats alike."""
    chosen: dict[tuple[bool, ...], str] = {}
    every = [a for p in patterns for a in atoms(p) if a.kind in ("char", "set")]
    rest = sorted(PATTERN_CHARS - set(_PREFERRED))
    for c in [*_PREFERRED, *rest, _FOREIGN]:
        chosen.setdefault(tuple(a.accepts(c) for a in every), c)
    return list(chosen.values())


@dataclass(frozen=True)
class Selection:
    """The names a policy attaches to (ir.InterfaceSelection): include globs (none: every
    name but loopback), exclude globs; loopback only when `include` names it literally."""

    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()

    def attaches(self, name: str) -> bool:
        if name == LOOPBACK and LOOPBACK not in self.include:
            return False
        if self.include and not any(matches(name, g) for g in self.include):
            return False
        return not any(matches(name, g) for g in self.exclude)


def signature(name: str, patterns: Sequence[str]) -> tuple[int, ...]:
    """The indexes of the patterns `name` matches."""
    return tuple(i for i, p in enumerate(patterns) if matches(name, p))


def realisable(patterns: Sequence[str], selection: Selection) -> dict[tuple[int, ...], str]:
    """Every signature over `patterns` of some valid interface name `selection` attaches to,
    with the shortest such name (an example).

    A breadth-first walk of the product of the globs' automata over names up to 15
    characters, with one character per class of characters the globs treat alike; the
    state also remembers whether the name so far is "", "." or "..", which are not names.
    """
    exclude = (*selection.exclude, *(() if LOOPBACK in selection.include else (LOOPBACK,)))
    machines = [atoms(p) for p in (*patterns, *selection.include, *exclude)]
    n_rules, n_include = len(patterns), len(selection.include)
    alphabet = _alphabet([*patterns, *selection.include, *exclude])
    start = tuple(_closure(frozenset({0}), m) for m in machines)
    State = tuple[tuple[frozenset[int], ...], str]
    # each state with the first name (in alphabet order) that reaches it
    level: list[tuple[State, str]] = [((start, ""), "")]
    seen: set[State] = {level[0][0]}
    found: dict[tuple[int, ...], str] = {}
    for _ in range(MAX_NAME):
        nxt: list[tuple[State, str]] = []
        for (states, prefix), name in level:
            for c in alphabet:
                moved = tuple(_step(s, m, c) for s, m in zip(states, machines, strict=True))
                dots = prefix + c if prefix + c in (".", "..") else "x"
                key = (moved, dots)
                if key in seen:
                    continue
                seen.add(key)
                nxt.append((key, name + c))
                if dots != "x":
                    continue
                accepted = [len(m) in s for s, m in zip(moved, machines, strict=True)]
                included = not n_include or any(accepted[n_rules : n_rules + n_include])
                if included and not any(accepted[n_rules + n_include :]):
                    found.setdefault(tuple(i for i in range(n_rules) if accepted[i]), name + c)
        level = nxt
    return found
