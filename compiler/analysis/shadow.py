"""Shadowed rules: rules no packet reaches, because the rules before them cover their match."""

from __future__ import annotations

from dataclasses import dataclass

from fwc.compiler.analysis.decide import behaviour
from fwc.compiler.analysis.index import RuleIndex
from fwc.compiler.analysis.region import PacketCase, example, point, writable
from fwc.compiler.analysis.space import Region, region_minus_all, region_overlaps
from fwc.compiler.policy.ir import Rule


@dataclass(frozen=True)
class Shadowed:
    """`rule` matches no packet that `cover` (earlier rules) leaves; `example` is one it would
    match, decided by `example_rule` instead. No rule of `cover` can be dropped from it."""

    rule: Rule
    cover: tuple[Rule, ...]  # empty when the rule's own fields match no packet at all
    conflicting: tuple[Rule, ...]  # cover rules that decide differently: the intent is broken
    example: PacketCase | None
    example_rule: Rule | None


def _walk(index: RuleIndex, i: int) -> tuple[Region, list[int]]:
    """What is left of rule `i`'s match after the earlier rules, and the earlier rules that
    took a part of it (each from what the ones before it left)."""
    taking: list[int] = []
    remaining = index.cubes[i]
    for j in index.overlapping(remaining, before=i):
        if region_overlaps(remaining, index.cubes[j]):
            taking.append(j)
            remaining = region_minus_all(remaining, index.cubes[j])
            if not remaining:
                break
    return remaining, taking


def reach(index: RuleIndex, i: int) -> Region:
    """The packets rule `i` decides: its match without every earlier rule's."""
    return _walk(index, i)[0]


def reaches(index: RuleIndex) -> list[Region]:
    """`reach` of every rule, for the analyses that share it."""
    return [reach(index, i) for i in range(len(index.rules))]


def _minimal_cover(index: RuleIndex, i: int, earlier: list[int]) -> list[int]:
    """Drops rules from `earlier` while the rest still covers rule `i`; the result is
    minimal (no rule can go), not necessarily the smallest such set."""
    cover = list(earlier)
    for j in reversed(earlier):
        rest = [k for k in cover if k != j]
        remaining = index.cubes[i]
        for k in rest:
            remaining = region_minus_all(remaining, index.cubes[k])
            if not remaining:
                break
        if not remaining:
            cover = rest
    return cover


def shadowed(index: RuleIndex, reached: list[Region] | None = None) -> list[Shadowed]:
    """Every rule no packet reaches, in evaluation order."""
    out: list[Shadowed] = []
    policy = index.policy
    for i, rule in enumerate(index.rules):
        if reached[i] if reached is not None else reach(index, i):
            continue
        earlier = _walk(index, i)[1]
        cover = _minimal_cover(index, i, earlier)
        mine = behaviour(policy, rule)
        packet: PacketCase | None = None
        decider: Rule | None = None
        if index.cubes[i]:
            probe = writable(index.cubes[i][0])[0]
            packet = example(probe, index.interfaces)
            first = next(j for j in earlier if region_overlaps([point(probe)], index.cubes[j]))
            decider = index.rules[first]
        out.append(
            Shadowed(
                rule,
                tuple(index.rules[j] for j in cover),
                tuple(index.rules[j] for j in cover if behaviour(policy, index.rules[j]) != mine),
                packet,
                decider,
            )
        )
    return out
