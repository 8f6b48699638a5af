"""Flattened sources put together into one policy: each family's rules, the default action."""

from __future__ import annotations

from dataclasses import dataclass

from fwc.compiler.importers.ctstate import with_state_warning
from fwc.compiler.importers.flatten import flatten
from fwc.compiler.importers.model import Flat, Gap, Match, Origin, Ruleset
from fwc.compiler.importers.render import Imported


@dataclass(frozen=True)
class Source:
    """One parsed source and the prefix of its rule names (`v4_l`, `v6_l`, `nft_h`)."""

    ruleset: Ruleset
    prefix: str


def _families(context: Match) -> tuple[int, ...]:
    return (context.family,) if context.family is not None else (4, 6)


def assemble(name: str, sources: list[Source]) -> Imported:
    """The policy of `sources`, `default_action: deny`.

    Every IP packet is decided by a rule, so the default only meets malformed packets,
    which the kernel drops before netfilter sees them. A family no source covers passes
    untouched, as on a host with no rules for it (a note says so).
    """
    rules: list[Flat] = []
    prefixes: list[str] = []
    gaps: list[Gap] = []
    notes: list[str] = []
    for source in sources:
        flats, found = flatten(source.ruleset)
        gaps += found
        notes += source.ruleset.notes
        rules += [with_state_warning(f) for f in flats]
        prefixes += [source.prefix] * len(flats)
    covered = {f for s in sources for f in _families(s.ruleset.context)}
    for family in (4, 6):
        if family not in covered:
            notes.append(
                f"No IPv{family} ruleset was given: IPv{family} packets pass, as on a host "
                f"with no IPv{family} rules."
            )
            origin = Origin("(none)", 0, f"no IPv{family} ruleset")
            rules.append(Flat(Match(family=family), True, origin, "every packet passes"))
            prefixes.append(f"v{family}_pass")
    kept = [k for k, flat in enumerate(rules) if not _said_by_default(rules, k)]
    return Imported(
        name,
        False,
        [rules[k] for k in kept],
        gaps=gaps,
        notes=notes,
        prefixes=[prefixes[k] for k in kept],
    )


def _said_by_default(rules: list[Flat], k: int) -> bool:
    """rules[k] denies a whole family (or everything) and no later rule sees that family."""
    flat = rules[k]
    if flat.allow or flat.log or flat.match != Match(family=flat.match.family):
        return False
    family = flat.match.family
    if family is None:
        return k == len(rules) - 1
    return all(r.match.family not in (None, family) for r in rules[k + 1 :])
