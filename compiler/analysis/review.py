"""A policy's behaviour as the gate reads it, computed once per check: each rule's reach,
the shadowed rules and the redundant ones."""

from __future__ import annotations

from dataclasses import dataclass, field

from fwc.compiler.analysis.index import RuleIndex
from fwc.compiler.analysis.redundancy import Redundant, redundant
from fwc.compiler.analysis.shadow import Shadowed, reaches, shadowed
from fwc.compiler.analysis.space import Region
from fwc.compiler.policy.ir import Policy


@dataclass(frozen=True)
class Review:
    """`reached[i]` is the region rule `i` decides (empty: the rule is shadowed)."""

    policy: Policy
    index: RuleIndex = field(repr=False)
    reached: list[Region] = field(repr=False)
    shadowed: list[Shadowed]
    redundant: list[Redundant]


def review(policy: Policy) -> Review:
    index = RuleIndex(policy)
    reached = reaches(index)
    return Review(policy, index, reached, shadowed(index, reached), redundant(index, reached))
