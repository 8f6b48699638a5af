"""Properties over regions: "every packet of this selection gets this action" (or "none does"),
proven or refuted with the parts that break it."""

from __future__ import annotations

from dataclasses import dataclass

from fwc.compiler.analysis.decide import Behaviour, behaviour, decide
from fwc.compiler.analysis.index import RuleIndex
from fwc.compiler.analysis.match import Selection, cubes
from fwc.compiler.analysis.region import Match, PacketCase, example, match_of, writable
from fwc.compiler.analysis.space import Cube, merge
from fwc.compiler.policy.findings import Location
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


@dataclass(frozen=True)
class Property:
    """A claim of a cases file: every packet of `selection` gets `action` (with `negated`:
    no packet of it does)."""

    name: str
    selection: Selection
    action: Action
    negated: bool
    location: Location

    @property
    def claim(self) -> str:
        """The claim in words: `expect: allow` or `expect_not: allow`."""
        return f"{'expect_not' if self.negated else 'expect'}: {self.action.value}"


def selects_nothing(selection: Selection) -> bool:
    """True when no packet matches `selection` (e.g. ports on an ICMP selection)."""
    return not cubes(selection)


def prove(
    index: RuleIndex, selection: Selection, action: Action, negated: bool = False
) -> list[Counterexample]:
    """The parts of `selection` whose action is not `action` (with `negated`: whose action
    is `action`), each writable as one rule match: empty is the proof."""
    out: list[Counterexample] = []
    for part in decide(index, cubes(selection)):
        got = behaviour(index.policy, part.rule)
        if (got.action is action) != negated:
            continue
        for cube in merge(part.region):
            out.extend(Counterexample(piece, part.rule, got) for piece in writable(cube))
    return out


def prove_property(index: RuleIndex, prop: Property) -> list[Counterexample]:
    return prove(index, prop.selection, prop.action, prop.negated)
