"""Redundant rules: reachable, yet removing one changes no packet's behaviour.

Behaviour is the action, the rate limit and the log flag. A rate_limit rule is never
redundant: its packets share a token bucket of its own, which no other rule's replaces.
"""

from __future__ import annotations

from dataclasses import dataclass

from fwc.compiler.analysis.decide import behaviour
from fwc.compiler.analysis.index import RuleIndex
from fwc.compiler.analysis.region import PacketCase, example, writable
from fwc.compiler.analysis.shadow import reach
from fwc.compiler.analysis.space import Region, region_minus_all, region_overlaps
from fwc.compiler.policy.ir import Action, Rule


@dataclass(frozen=True)
class Redundant:
    """Without `rule`, its packets go to `successors` (later rules) or the default (when
    `default`), which all do the same; `example` is one packet it decides today."""

    rule: Rule
    successors: tuple[Rule, ...]
    default: bool
    example: PacketCase


def _successors(index: RuleIndex, i: int, decided: Region) -> tuple[list[int], bool] | None:
    """The later rules (and whether the default) that would decide `decided` without rule
    `i`, or None when one of them would behave differently."""
    mine = behaviour(index.policy, index.rules[i])
    taken: list[int] = []
    for j in index.overlapping(decided, after=i):
        if not region_overlaps(decided, index.cubes[j]):
            continue
        if behaviour(index.policy, index.rules[j]) != mine:
            return None
        taken.append(j)
        decided = region_minus_all(decided, index.cubes[j])
        if not decided:
            return taken, False
    if behaviour(index.policy, None) != mine:
        return None
    return taken, True


def redundant(index: RuleIndex, reached: list[Region] | None = None) -> list[Redundant]:
    """Every reachable rule whose removal changes no packet's behaviour, in evaluation order."""
    out: list[Redundant] = []
    for i, rule in enumerate(index.rules):
        if rule.action is Action.RATE_LIMIT:
            continue
        decided = reached[i] if reached is not None else reach(index, i)
        if not decided:
            continue
        found = _successors(index, i, decided)
        if found is None:
            continue
        taken, default = found
        out.append(
            Redundant(
                rule,
                tuple(index.rules[j] for j in taken),
                default,
                example(writable(decided[0])[0], index.interfaces),
            )
        )
    return out
