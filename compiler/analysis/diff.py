"""The semantic diff of two policies: every packet whose behaviour changes, as disjoint regions.

Only packets that some rule outside the common subsequence of both rule lists matches
can change: every other packet meets the same rules in the same order in both policies
(and the packets no rule matches, which change only with the default action).
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field

from fwc.compiler.analysis.decide import Behaviour, behaviour, decide
from fwc.compiler.analysis.index import RuleIndex
from fwc.compiler.analysis.match import selection_of
from fwc.compiler.analysis.region import Match, PacketCase, example, match_of, writable
from fwc.compiler.analysis.space import (
    Cube,
    Intervals,
    Region,
    meet_intervals,
    merge,
    minus,
    minus_intervals,
    region_minus_all,
    union_intervals,
)
from fwc.compiler.policy.interfaces import NO_INTERFACES, InterfaceClasses
from fwc.compiler.policy.ir import Action, Rule

# What a change is about; "verdict" (the action or its rate limit) fails a diff.
VERDICT, LOG, COUNTER = "verdict", "log", "counter"
_PASSES = {Action.DENY: 0, Action.RATE_LIMIT: 1, Action.ALLOW: 2}


@dataclass(frozen=True)
class Decider:
    """Who decides the region in one policy, and what it does."""

    rule: Rule | None  # None: the default action
    behaviour: Behaviour


@dataclass(frozen=True)
class Change:
    """Every packet of `cube` (writable as one rule match) goes from `old` to `new`."""

    kind: str  # VERDICT, LOG or COUNTER
    cube: Cube  # with `unmatched`, one part of the region, for the example
    old: Decider
    new: Decider
    # The region is every packet that no rule of either policy matches (the default
    # action changed): written as the rules' complement, not as cubes, to stay short.
    unmatched: bool = False
    interfaces: InterfaceClasses = field(default=NO_INTERFACES, compare=False)

    @property
    def match(self) -> Match:
        if self.unmatched:
            return {"no_rule_matches": True}
        return match_of(self.cube, self.interfaces)

    @property
    def example(self) -> PacketCase:
        return example(self.cube, self.interfaces)

    @property
    def newly_allowed(self) -> bool:
        """The new action passes more: deny to rate_limit or allow, rate_limit to allow."""
        return _PASSES[self.new.behaviour.action] > _PASSES[self.old.behaviour.action]


def _signature(rule: Rule) -> tuple[object, ...]:
    """Everything of a rule that decides or counts a packet; not its place or priority."""
    return (
        rule.name,
        rule.action,
        selection_of(rule),
        rule.interfaces,
        rule.not_interfaces,
        rule.rate_limit_pps,
        rule.rate_limit_burst,
        rule.log,
    )


def _touched(old: RuleIndex, new: RuleIndex) -> Region:
    """A disjoint region that holds every packet whose behaviour may change, but for the
    packets no rule of either policy matches."""
    a = [_signature(rule) for rule in old.rules]
    b = [_signature(rule) for rule in new.rules]
    matcher = difflib.SequenceMatcher(None, a, b, autojunk=False)
    kept_old: set[int] = set()
    kept_new: set[int] = set()
    for block in matcher.get_matching_blocks():
        kept_old.update(range(block.a, block.a + block.size))
        kept_new.update(range(block.b, block.b + block.size))
    cubes = [c for i, cs in enumerate(old.cubes) if i not in kept_old for c in cs]
    cubes += [c for i, cs in enumerate(new.cubes) if i not in kept_new for c in cs]
    region: Region = []
    for cube in cubes:
        region += region_minus_all([cube], region)
    return region


def _kind(old: Decider, new: Decider) -> str | None:
    a, b = old.behaviour, new.behaviour
    if (a.action, a.rate_limit_pps, a.rate_limit_burst) != (
        b.action,
        b.rate_limit_pps,
        b.rate_limit_burst,
    ):
        return VERDICT
    if a.log != b.log:
        return LOG
    name_a = old.rule.name if old.rule is not None else None
    name_b = new.rule.name if new.rule is not None else None
    return COUNTER if name_a != name_b else None


def _named_sources(old: RuleIndex, new: RuleIndex) -> dict[int, Intervals]:
    """Per family bit, every source address some rule names (rules without sources aside)."""
    spans: dict[int, list[tuple[int, int]]] = {}
    for index in (old, new):
        for rule, cubes in zip(index.rules, index.cubes, strict=True):
            if rule.sources:
                for cube in cubes:
                    spans.setdefault(cube.family, []).extend(cube.src)
    return {bit: union_intervals((), tuple(found)) for bit, found in spans.items()}


def _unmatched_part(old: RuleIndex, new: RuleIndex) -> Cube | None:
    """A cube of packets that no rule of either policy matches, or None when there are none.

    Depth first, sources no rule names first (where free packets usually lie); each step
    takes one overlapping rule's cube out of a piece and goes on with the part that
    leaves it by the earliest field."""
    named = _named_sources(old, new)
    pieces: Region = []
    for cube in old.universe:
        inside = meet_intervals(cube.src, named.get(cube.family, ()))
        outside = minus_intervals(cube.src, inside)
        pieces += [cube._replace(src=src) for src in (inside, outside) if src]
    while pieces:
        piece = pieces.pop()
        hit = old.any_overlapping(piece) or new.any_overlapping(piece)
        if hit is None:
            return piece
        pieces += reversed(minus(piece, hit))
    return None


def diff(old: RuleIndex, new: RuleIndex) -> list[Change]:
    """Every packet whose verdict, log or counter differs, in disjoint writable regions
    (and, when the default action changed, the packets no rule matches, as one change)."""
    out: list[Change] = []
    if old.policy.default_action is not new.policy.default_action:
        part = _unmatched_part(old, new)
        if part is not None:
            was = Decider(None, behaviour(old.policy, None))
            now = Decider(None, behaviour(new.policy, None))
            out.append(Change(VERDICT, writable(part)[0], was, now, True, old.interfaces))
    for before in decide(old, _touched(old, new)):
        was = Decider(before.rule, behaviour(old.policy, before.rule))
        for after in decide(new, before.region):
            now = Decider(after.rule, behaviour(new.policy, after.rule))
            kind = _kind(was, now)
            if kind is None:
                continue
            for cube in merge(after.region):
                out.extend(
                    Change(kind, piece, was, now, interfaces=old.interfaces)
                    for piece in writable(cube)
                )
    return out
