"""Plain address lists (one address or CIDR a line, as firehol, Spamhaus DROP and crowdsec
publish them) read into one set, and written as a policy that denies it."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from fwc.compiler.importers.model import SourceError
from fwc.compiler.policy.ir import AddressRange, Family
from fwc.compiler.policy.normalize import parse_address
from fwc.files import POLICY_LIMIT, FileReadError, read_bounded

# `#` starts a comment anywhere (firehol, crowdsec), and so does `;` (Spamhaus DROP:
# "1.10.16.0/20 ; SBL256894").
COMMENT_MARKS = ("#", ";")
# A set name that leaves room for the rule `deny_<name>` (rule names hold 63 characters).
SET_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,57}")


@dataclass(frozen=True)
class Problem:
    """A line that is no address (an error), or one whose host bits were cleared (a warning)."""

    file: str
    line: int
    message: str
    error: bool

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {'error' if self.error else 'warning'}: {self.message}"


@dataclass
class ListImport:
    """The entries of every file, first occurrence first, and what each file gave."""

    entries: list[AddressRange] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    counts: list[tuple[str, int]] = field(default_factory=list)  # (file, entries it added)
    duplicates: int = 0

    @property
    def errors(self) -> list[Problem]:
        return [p for p in self.problems if p.error]


def _strip(raw: str) -> str:
    for mark in COMMENT_MARKS:
        raw = raw.split(mark, 1)[0]
    return raw.strip()


def read_lists(paths: list[str]) -> ListImport:
    """Every file's entries; a line that is not an address is a Problem, never a guess."""
    out = ListImport()
    seen: set[AddressRange] = set()
    for path in paths:
        try:
            text = read_bounded(path, POLICY_LIMIT).decode("utf-8-sig")
        except (FileReadError, UnicodeDecodeError) as exc:
            raise SourceError(f"{path}: cannot read: {exc}") from None
        before = len(out.entries)
        for number, raw in enumerate(text.splitlines(), 1):
            word = _strip(raw)
            if not word:
                continue
            parsed = parse_address(word)
            if parsed is None or word.startswith("$"):
                out.problems.append(
                    Problem(path, number, f"'{word}' is not an IPv4 or IPv6 address or CIDR", True)
                )
                continue
            address, host_bits = parsed
            if host_bits:
                out.problems.append(
                    Problem(
                        path,
                        number,
                        f"'{word}' has host bits set under the mask; {address} is used",
                        False,
                    )
                )
            if address in seen:
                out.duplicates += 1
                continue
            seen.add(address)
            out.entries.append(address)
        out.counts.append((path, len(out.entries) - before))
    return out


def render_list(result: ListImport, name: str, set_name: str, priority: int, lossy: bool) -> str:
    """A policy that denies every source in the set, first; add service rules after it, or
    copy the set and the rule into a policy of your own."""
    v4 = sum(1 for a in result.entries if a.family is Family.IPV4)
    head = ["# Imported by `fwc import list` from:"]
    head += [f"#   {path}: {count} entries" for path, count in result.counts]
    head.append(f"# {len(result.entries)} entries ({v4} IPv4, {len(result.entries) - v4} IPv6)")
    if result.duplicates:
        head.append(f"# {result.duplicates} duplicate entries dropped")
    if lossy and result.errors:
        head.append("# THIS SET DIFFERS FROM THE SOURCE: these lines were left out (--lossy):")
        head += [f"#   {p.file}:{p.line}: {p.message}" for p in result.errors]
    files = ", ".join(Path(path).name for path, _ in result.counts)
    lines = [
        *head,
        "version: 1",
        f"name: {name}",
        "default_action: deny",
        "sets:",
        f"  {set_name}:",
        *(f"    - {a}" for a in result.entries),
        "rules:",
        f"  - name: deny_{set_name}",
        f"    priority: {priority}",
        "    action: deny",
        f'    source_cidrs: ["${set_name}"]',
        f'    description: "sources listed in {files}"',
    ]
    return "\n".join(lines) + "\n"
