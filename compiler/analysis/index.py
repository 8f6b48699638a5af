"""A policy prepared for analysis: each rule's cubes, and an index of the rules a region may touch.

The index only narrows the search; every answer still comes from exact cube arithmetic.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Callable

from fwc.compiler.analysis.match import FAMILY_BITS, rule_cubes, universe
from fwc.compiler.analysis.space import Cube, Intervals, Region, overlaps, region_overlaps
from fwc.compiler.policy.interfaces import InterfaceClasses, interface_classes
from fwc.compiler.policy.ir import AddressRange, Family, Policy, Rule


class _AddressIndex:
    """Rules by the CIDRs of one address field: those inside a span, and those around a point."""

    def __init__(self, rules: tuple[Rule, ...], field: Callable[[Rule], tuple[AddressRange, ...]]):
        # Positions, not `Rule.id`: an edited policy in a test or a diff may hold stale ids.
        self.anywhere = [i for i, rule in enumerate(rules) if not field(rule)]
        self.starts: dict[int, list[tuple[int, int]]] = {bit: [] for bit in FAMILY_BITS.values()}
        self.around: dict[tuple[int, int, int], list[int]] = {}
        self.lengths: dict[int, set[int]] = {bit: set() for bit in FAMILY_BITS.values()}
        for i, rule in enumerate(rules):
            for r in field(rule):
                bit = FAMILY_BITS[r.family]
                self.starts[bit].append((r.first, i))
                self.around.setdefault((bit, r.prefix_len, r.network), []).append(i)
                self.lengths[bit].add(r.prefix_len)
        for starts in self.starts.values():
            starts.sort()
        self.widths = {FAMILY_BITS[f]: f.width for f in Family}

    def query(self, family_bit: int, spans: Intervals) -> set[int]:
        """Rules whose field overlaps `spans`: a CIDR starts inside a span or holds its start."""
        out = set(self.anywhere)
        starts = self.starts[family_bit]
        width = self.widths[family_bit]
        for lo, hi in spans:
            i = bisect_left(starts, (lo, -1))
            while i < len(starts) and starts[i][0] <= hi:
                out.add(starts[i][1])
                i += 1
            for length in self.lengths[family_bit]:
                network = lo & ~((1 << (width - length)) - 1)
                out.update(self.around.get((family_bit, length, network), ()))
        return out


class RuleIndex:
    """A policy's rules as cubes, with a search for the rules that overlap a region."""

    def __init__(self, policy: Policy, interfaces: InterfaceClasses | None = None) -> None:
        """`interfaces`: the classes to use (a diff gives both sides the same ones)."""
        self.policy = policy
        self.rules = policy.rules
        self.interfaces = interface_classes(policy) if interfaces is None else interfaces
        self.universe: Region = universe(self.interfaces)
        self.cubes: list[Region] = [rule_cubes(rule, self.interfaces) for rule in policy.rules]
        self._sources = _AddressIndex(policy.rules, lambda rule: rule.sources)
        self._destinations = _AddressIndex(policy.rules, lambda rule: rule.destinations)

    def overlapping(self, region: Region, before: int | None = None) -> list[int]:
        """Positions of the rules that share a packet with `region`, in evaluation order;
        with `before`, only the rules placed before that position."""
        found: set[int] = set()
        for cube in region:
            for bit in FAMILY_BITS.values():
                if cube.family & bit:
                    found |= self._candidates(bit, cube.src, cube.dst)
        if before is not None:
            found = {i for i in found if i < before}
        return sorted(i for i in found if region_overlaps(region, self.cubes[i]))

    def any_overlapping(self, cube: Cube) -> Cube | None:
        """A cube of some rule that shares a packet with `cube` (no matter which), or None."""
        found: set[int] = set()
        for bit in FAMILY_BITS.values():
            if cube.family & bit:
                found |= self._candidates(bit, cube.src, cube.dst)
        for i in found:
            for other in self.cubes[i]:
                if overlaps(cube, other):
                    return other
        return None

    def _candidates(self, family_bit: int, src: Intervals, dst: Intervals) -> set[int]:
        by_source = self._sources.query(family_bit, src)
        # A policy that names destinations rather than sources narrows better by them.
        if len(by_source) * 4 <= len(self.rules):
            return by_source
        by_destination = self._destinations.query(family_bit, dst)
        return by_source & by_destination
