"""The packets a policy passes, per action, as few disjoint regions that rules could write.

Each rule's reach is one part; parts that agree on every field but one are joined in
that field, one pass per field: ports only within one rule's parts, addresses across
rules, so a network split over several rules reads as one region, as a reviewer would
write it (a region of ports 22 and 443 would blame the rule of 443 for SSH).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import cast

from fwc.compiler.analysis.index import RuleIndex
from fwc.compiler.analysis.region import writable
from fwc.compiler.analysis.space import Cube, Intervals, Region, minus, union_intervals
from fwc.compiler.policy.ir import Action

# The joining passes: a field (as a Cube position) and whether parts of different rules
# join in it: sport and dport within a rule, then src and dst across rules.
_PASSES = ((5, False), (6, False), (1, True), (2, True))


@dataclass(frozen=True)
class Part:
    """Every packet of `cube` gets `action` from one of `rules` (None: the default action)."""

    cube: Cube
    action: Action
    rules: tuple[str | None, ...]


def unmatched(index: RuleIndex) -> Region:
    """Every packet no rule matches, as disjoint cubes: each piece that meets a rule loses
    that rule's cube, and the index finds the rules a piece meets."""
    out: Region = []
    pieces = list(index.universe)
    while pieces:
        piece = pieces.pop()
        hit = index.any_overlapping(piece)
        if hit is None:
            out.append(piece)
        else:
            pieces += minus(piece, hit)
    return out


def _join(
    parts: list[Part], position: int, across: bool, order: dict[str | None, int]
) -> list[Part]:
    """Parts of one action (and with `across` false, of the same rules) equal but in field
    `position` become one; disjointness stays, since the joined cube is exactly the union
    of those it joins."""
    groups: dict[tuple[object, ...], tuple[Cube, Action, set[str | None]]] = {}
    for part in parts:
        # The action's value, not the enum: an Enum hashes in Python, slowly.
        key: tuple[object, ...] = (
            part.action.value,
            *part.cube[:position],
            *part.cube[position + 1 :],
        )
        if not across:
            key += part.rules
        found = groups.get(key)
        if found is None:
            groups[key] = (part.cube, part.action, set(part.rules))
            continue
        cube, action, rules = found
        fields = list(cube)
        fields[position] = union_intervals(
            cast("Intervals", cube[position]), cast("Intervals", part.cube[position])
        )
        groups[key] = (Cube._make(fields), action, rules)
        rules.update(part.rules)
    return [
        Part(cube, action, tuple(sorted(rules, key=order.__getitem__)))
        for cube, action, rules in groups.values()
    ]


def passed(index: RuleIndex, reached: list[Region]) -> list[Part]:
    """The packets that allow and rate_limit rules (and an allowing default) decide."""
    parts = [
        Part(cube, rule.action, (rule.name,))
        for rule, region in zip(index.rules, reached, strict=True)
        if rule.action is not Action.DENY
        for cube in region
    ]
    if index.policy.default_action is Action.ALLOW:
        parts += [Part(cube, Action.ALLOW, (None,)) for cube in unmatched(index)]
    # Deciding rules in evaluation order, the default last.
    order: dict[str | None, int] = {rule.name: i for i, rule in enumerate(index.rules)}
    order[None] = len(order)
    for position, across in _PASSES:
        parts = _join(parts, position, across, order)
    return [Part(piece, p.action, p.rules) for p in parts for piece in writable(p.cube)]
