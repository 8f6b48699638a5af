"""Properties over regions: "every packet of this selection gets this action", proven or refuted."""

from __future__ import annotations

from dataclasses import dataclass

from fwc.compiler.analysis.decide import Behaviour, behaviour, decide
from fwc.compiler.analysis.index import RuleIndex
from fwc.compiler.analysis.match import Selection, cubes
from fwc.compiler.analysis.region import Match, PacketCase, example, match_of, writable
from fwc.compiler.analysis.space import Cube, merge
from fwc.compiler.policy.ir import Action, Rule


@dataclass(frozen=True)
class Counterexample:
    """Every packet of `cube` gets `behaviour` from `rule` (None: the default action)."""

    cube: Cube
    rule: Rule | None
    behaviour: Behaviour

    @property
    def match(self) -> Match:
        return match_of(self.cube)

    @property
    def example(self) -> PacketCase:
        return example(self.cube)


def prove(index: RuleIndex, selection: Selection, action: Action) -> list[Counterexample]:
    """The parts of `selection` whose action is not `action`: empty is the proof."""
    out: list[Counterexample] = []
    for part in decide(index, cubes(selection)):
        got = behaviour(index.policy, part.rule)
        if got.action is action:
            continue
        for cube in merge(part.region):
            out.extend(Counterexample(piece, part.rule, got) for piece in writable(cube))
    return out
