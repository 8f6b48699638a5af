"""Rego modules on disk, each with what a light scan finds: package, rule heads and calls.

The scan is lexical, not a parser: it is enough to find the gate's deny/warn/exception
rules, the test_ rules, and every function call with its line, so that a built-in the
engine lacks is reported before anything is evaluated.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

BUNDLED_DIR = Path(__file__).parents[2] / "rego"

_TOKEN = re.compile(
    r"""
    (?P<space>[ \t\r]+)
  | (?P<newline>\n)
  | (?P<comment>\#[^\n]*)
  | (?P<string>"(?:[^"\\\n]|\\.)*")
  | (?P<raw>`[^`]*`)
  | (?P<ident>[A-Za-z_][A-Za-z0-9_]*)
  | (?P<number>[0-9][0-9.eE+-]*)
  | (?P<punct>:=|==|!=|<=|>=|[{}\[\]().,;:|=<>+\-*/%&!])
  | (?P<other>.)
    """,
    re.VERBOSE | re.DOTALL,
)
_OPEN = {"(": ")", "[": "]", "{": "}"}
# Words that can stand before "(" without being a call.
_KEYWORDS = {"not", "if", "else", "some", "every", "in", "with", "as", "default", "import"}


@dataclass(frozen=True)
class Call:
    name: str
    line: int


@dataclass(frozen=True)
class Module:
    """One .rego file: its text and what the scan found in it."""

    path: Path
    text: str
    package: str
    rules: tuple[str, ...]  # names of the rules defined at the top level, in file order
    functions: tuple[str, ...]  # names of the functions defined here
    aliases: tuple[str, ...]  # names that `import data.x.y [as z]` binds
    calls: tuple[Call, ...]

    @property
    def display(self) -> str:
        return str(self.path)


class ScanError(Exception):
    """A module the scan cannot read (no package, unbalanced brackets)."""


def _tokens(text: str) -> list[tuple[str, str, int]]:
    out: list[tuple[str, str, int]] = []
    line = 1
    for m in _TOKEN.finditer(text):
        kind = m.lastgroup or "other"
        value = m.group()
        if kind == "newline":
            out.append(("newline", value, line))
        elif kind not in ("space", "comment"):
            out.append((kind, value, line))
        line += value.count("\n")
    return out


def scan(path: Path, text: str) -> Module:
    tokens = _tokens(text)
    package = ""
    rules: list[str] = []
    functions: list[str] = []
    aliases: list[str] = []
    calls: list[Call] = []
    stack: list[str] = []
    at_line_start = True
    i = 0
    while i < len(tokens):
        kind, value, line = tokens[i]
        if kind == "newline":
            at_line_start = not stack
            i += 1
            continue
        if kind == "punct" and value in _OPEN:
            stack.append(_OPEN[value])
        elif kind == "punct" and value in (")", "]", "}") and (not stack or stack.pop() != value):
            raise ScanError(f"{path}:{line}: unbalanced '{value}'")
        if not stack and at_line_start and kind == "ident":
            if value == "package" and i + 1 < len(tokens):
                i, package = _ref(tokens, i + 1)
            else:
                i = _top_level(tokens, i, rules, functions, aliases)
            at_line_start = False
            continue
        at_line_start = False
        if kind == "ident":
            j, name = _ref(tokens, i)
            follows_dot = i > 0 and tokens[i - 1][1] == "."
            is_call = j < len(tokens) and tokens[j][1] == "(" and value not in _KEYWORDS
            if is_call and not follows_dot:
                calls.append(Call(name, line))
            i = j
            continue
        i += 1
    if stack:
        raise ScanError(f"{path}: unclosed '{stack[-1]}' at the end of the file")
    if not package:
        raise ScanError(f"{path}: no `package` declaration")
    return Module(path, text, package, tuple(rules), tuple(functions), tuple(aliases), tuple(calls))


def _ref(tokens: list[tuple[str, str, int]], i: int) -> tuple[int, str]:
    """The dotted name starting at token i, and the index after it."""
    parts = [tokens[i][1]]
    j = i + 1
    while j + 1 < len(tokens) and tokens[j][1] == "." and tokens[j + 1][0] == "ident":
        parts.append(tokens[j + 1][1])
        j += 2
    return j, ".".join(parts)


def _top_level(
    tokens: list[tuple[str, str, int]],
    i: int,
    rules: list[str],
    functions: list[str],
    aliases: list[str],
) -> int:
    """Reads the head of a top-level statement at token i; returns the index after its name."""
    word = tokens[i][1]
    if word == "import":
        j, name = _ref(tokens, i + 1)
        if j + 1 < len(tokens) and tokens[j][1] == "as":
            aliases.append(tokens[j + 1][1])
            return j + 2
        if name.startswith("data."):
            aliases.append(name.rsplit(".", 1)[-1])
        return j
    if word == "default" and i + 1 < len(tokens) and tokens[i + 1][0] == "ident":
        i += 1
    j, name = _ref(tokens, i)
    head = name.split(".", 1)[0]
    if j < len(tokens) and tokens[j][1] == "(" and head not in functions:
        functions.append(head)
    if head not in rules:
        rules.append(head)
    return j


def rego_files(directory: Path) -> list[Path]:
    return sorted(p for p in directory.rglob("*.rego") if p.is_file())


def load_modules(directories: tuple[Path, ...]) -> list[Module]:
    """Every .rego file under `directories` (the bundled set when none are given)."""
    modules: list[Module] = []
    for directory in directories or (BUNDLED_DIR,):
        if not directory.is_dir():
            raise ScanError(f"{directory}: not a directory")
        for path in rego_files(directory):
            try:
                text = path.read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError) as exc:
                raise ScanError(f"cannot read {path}: {exc}") from None
            modules.append(scan(path, text))
    if not modules:
        raise ScanError(f"no .rego files in {', '.join(str(d) for d in directories)}")
    return modules


def unknown_calls(
    modules: list[Module], is_builtin: Callable[[str], bool]
) -> list[tuple[Module, Call]]:
    """Calls that name neither a function of the loaded modules nor a built-in."""
    defined = {f for m in modules for f in m.functions}
    found: list[tuple[Module, Call]] = []
    for module in modules:
        local = set(module.aliases)
        for call in module.calls:
            head = call.name.split(".", 1)[0]
            if head == "data" or head in local or call.name in defined:
                continue
            if is_builtin(call.name):
                continue
            found.append((module, call))
    return found
