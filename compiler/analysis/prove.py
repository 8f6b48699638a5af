"""Properties over regions: "every packet of this selection gets this action" (or "none does"),
proven or refuted with the parts that break it."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

from fwc.compiler.analysis.decide import Behaviour, behaviour, decide
from fwc.compiler.analysis.index import RuleIndex
from fwc.compiler.analysis.match import Selection, cubes, interface_field
from fwc.compiler.analysis.region import Match, PacketCase, example, match_of, writable
from fwc.compiler.analysis.space import (
    ALL_STATES,
    ANY_INTERFACE,
    Cube,
    Intervals,
    Region,
    meet_intervals,
    merge,
)
from fwc.compiler.policy.findings import Location
from fwc.compiler.policy.interfaces import NO_INTERFACES, InterfaceClasses
from fwc.compiler.policy.ir import Action, Rule


@dataclass(frozen=True)
class Counterexample:
    """Every packet of `cube` gets `behaviour` from `rule` (None: the default action)."""

    cube: Cube
    rule: Rule | None
    behaviour: Behaviour

    interfaces: InterfaceClasses = field(default=NO_INTERFACES, compare=False)

    @property
    def match(self) -> Match:
        return match_of(self.cube, self.interfaces)

    @property
    def example(self) -> PacketCase:
        return example(self.cube, self.interfaces)


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
    return not cubes(selection, selection.states != ALL_STATES)


# A piece of the selection that more rules than this overlap is halved before first match
# splits it: splitting one region by thousands of rules costs the square of their number.
SPLIT_OVER = 64


def _split(spans: Intervals) -> tuple[Intervals, Intervals] | None:
    lo, hi = spans[0][0], spans[-1][1]
    if lo == hi:
        return None
    mid = (lo + hi) // 2
    return meet_intervals(spans, ((lo, mid),)), meet_intervals(spans, ((mid + 1, hi),))


def _halves(cube: Cube) -> Iterator[tuple[Cube, Cube]]:
    """`cube` cut in two by source address, then by destination (each if it can be)."""
    src = _split(cube.src)
    if src is not None:
        yield cube._replace(src=src[0]), cube._replace(src=src[1])
    dst = _split(cube.dst)
    if dst is not None:
        yield cube._replace(dst=dst[0]), cube._replace(dst=dst[1])


def _cut(index: RuleIndex, cube: Cube, count: int) -> list[tuple[Cube, int]] | None:
    """The first halving of `cube` with a half that overlaps fewer than `count` rules."""
    for halves in _halves(cube):
        cut = [(half, len(index.overlapping([half]))) for half in halves]
        if min(n for _, n in cut) < count:
            return cut
    return None


def pieces(index: RuleIndex, region: Region) -> Iterator[Region]:
    """`region` as disjoint pieces in its order, each halved while it overlaps more than
    SPLIT_OVER rules and a half overlaps fewer (halving cannot part rules that hold it all)."""
    # A stack of pieces still to yield, the next on top: pieces come out in region order.
    stack = [(cube, len(index.overlapping([cube]))) for cube in reversed(region)]
    while stack:
        cube, count = stack.pop()
        cut = _cut(index, cube, count) if count > SPLIT_OVER else None
        if cut is None:
            yield [cube]
        else:
            stack.extend(reversed(cut))


def prove(
    index: RuleIndex, selection: Selection, action: Action, negated: bool = False
) -> list[Counterexample]:
    """The parts of `selection` whose action is not `action` (with `negated`: whose action
    is `action`), each writable as one rule match: empty is the proof. Ordered by the
    deciding rule (the default last)."""
    found: dict[int, list[Counterexample]] = {}
    last = len(index.rules)
    place = {id(rule): i for i, rule in enumerate(index.rules)}
    region = cubes(selection, index.states or selection.states != ALL_STATES)
    attached = interface_field(index.interfaces)
    if attached != ANY_INTERFACE:
        region = [c._replace(interface=attached) for c in region]
    for piece in pieces(index, region):
        for part in decide(index, piece):
            got = behaviour(index.policy, part.rule)
            if (got.action is action) != negated:
                continue
            at = found.setdefault(last if part.rule is None else place[id(part.rule)], [])
            for cube in merge(part.region):
                at.extend(
                    Counterexample(bit, part.rule, got, index.interfaces) for bit in writable(cube)
                )
    return [c for position in sorted(found) for c in found[position]]


def prove_property(index: RuleIndex, prop: Property) -> list[Counterexample]:
    return prove(index, prop.selection, prop.action, prop.negated)
