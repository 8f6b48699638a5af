"""`ipset save` output: the address sets that iptables rules name with `--match-set`."""

from __future__ import annotations

import shlex
from dataclasses import dataclass, field
from pathlib import Path

from fwc.compiler.importers import cidrs
from fwc.compiler.importers.cidrs import Net
from fwc.compiler.importers.model import SourceError

ADDRESS_TYPES = ("hash:ip", "hash:net", "bitmap:ip")


@dataclass
class IpSet:
    """One set: its type, family (4 or 6) and entries; `unsupported` says why a rule naming
    it cannot be imported (a set of ports or pairs, `nomatch` entries)."""

    name: str
    kind: str
    family: int
    nets: list[Net] = field(default_factory=list)
    unsupported: str = ""


def read_ipsets(paths: list[str]) -> dict[str, IpSet]:
    sets: dict[str, IpSet] = {}
    for path in paths:
        try:
            text = Path(path).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise SourceError(
                f"{path}: cannot read: {getattr(exc, 'strerror', None) or exc}"
            ) from None
        for number, raw in enumerate(text.splitlines(), 1):
            _line(sets, path, number, raw)
    return sets


def _line(sets: dict[str, IpSet], path: str, number: int, raw: str) -> None:
    try:
        words = shlex.split(raw, comments=True)
    except ValueError as exc:
        raise SourceError(f"{path}:{number}: {exc}") from None
    if not words:
        return
    if words[0] == "create" and len(words) >= 3:
        opts = words[3:]
        family = 6 if "family" in opts and opts[opts.index("family") + 1 :][:1] == ["inet6"] else 4
        made = IpSet(words[1], words[2], family)
        if words[2] not in ADDRESS_TYPES:
            made.unsupported = (
                f"ipset {words[1]} is of type {words[2]}: only address sets map to fwc sets"
            )
        sets[words[1]] = made
    elif words[0] == "add" and len(words) >= 3:
        target = sets.get(words[1])
        if target is None:
            raise SourceError(f"{path}:{number}: add to ipset {words[1]!r} before its create line")
        if "nomatch" in words[3:]:
            target.unsupported = (
                f"ipset {words[1]} has nomatch entries (exceptions inside its networks)"
            )
        if not target.unsupported:
            target.nets.extend(_entry(words[2], path, number))
    else:
        raise SourceError(f"{path}:{number}: not an ipset save line: {raw.strip()[:60]}")


def _entry(text: str, path: str, number: int) -> tuple[Net, ...]:
    try:
        if "-" in text:
            first, last = text.split("-", 1)
            return cidrs.cover_range(first, last)
        return (cidrs.parse_net(text),)
    except ValueError:
        raise SourceError(
            f"{path}:{number}: {text!r} is not an address, network or range"
        ) from None
