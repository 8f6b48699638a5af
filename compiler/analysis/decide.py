"""Which rule decides each packet of a region: the region split by first match, exactly."""

from __future__ import annotations

from dataclasses import dataclass

from fwc.compiler.analysis.index import RuleIndex
from fwc.compiler.analysis.space import Region, region_meet, region_minus_all
from fwc.compiler.policy.ir import Action, Policy, Rule


@dataclass(frozen=True)
class Behaviour:
    """What a deciding rule (or the default) does to a packet, apart from its counter."""

    action: Action
    rate_limit_pps: int | None = None
    rate_limit_burst: int | None = None
    log: bool = False

    @property
    def verdict(self) -> str:
        return self.action.value


def behaviour(policy: Policy, rule: Rule | None) -> Behaviour:
    if rule is None:
        return Behaviour(policy.default_action)
    return Behaviour(rule.action, rule.rate_limit_pps, rule.rate_limit_burst, rule.log)


@dataclass(frozen=True)
class Decided:
    """Packets of a region that `rule` decides (None: the default action)."""

    region: Region
    rule: Rule | None


def decide(index: RuleIndex, region: Region) -> list[Decided]:
    """`region` split into disjoint parts by the rule that decides each packet."""
    out: list[Decided] = []
    remaining = region
    for i in index.overlapping(region):
        if not remaining:
            break
        cubes = index.cubes[i]
        taken = region_meet(remaining, cubes)
        if taken:
            out.append(Decided(taken, index.rules[i]))
            remaining = region_minus_all(remaining, cubes)
    if remaining:
        out.append(Decided(remaining, None))
    return out
