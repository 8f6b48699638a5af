"""A policy prepared for analysis: each rule's cubes, and an index of the rules a region may touch.

The index only narrows the search; every answer still comes from exact cube arithmetic.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Callable

from fwc.compiler.analysis.match import FAMILY_BITS, rule_cubes, universe
from fwc.compiler.analysis.space import (
    Cube,
    Intervals,
    Region,
    intervals_overlap,
    overlaps,
    region_overlaps,
)
from fwc.compiler.policy.interfaces import InterfaceClasses, interface_classes
from fwc.compiler.policy.ir import AddressRange, Family, Policy, Rule

# A rule field holding more CIDRs of one family than this (a blocklist) is not indexed
# CIDR by CIDR: its merged spans are tested against a query's whole, by bisection.
LARGE_FIELD = 64


class _AddressIndex:
    """Rules by the CIDRs of one address field: those inside a span, and those around a point."""

    def __init__(
        self,
        rules: tuple[Rule, ...],
        field: Callable[[Rule], tuple[AddressRange, ...]],
        spans: Callable[[int, int], Intervals],
    ):
        # Positions, not `Rule.id`: an edited policy in a test or a diff may hold stale ids.
        self.anywhere = [i for i, rule in enumerate(rules) if not field(rule)]
        self.starts: dict[int, list[tuple[int, int]]] = {bit: [] for bit in FAMILY_BITS.values()}
        self.entries: dict[int, list[tuple[int, int, int]]] = {b: [] for b in FAMILY_BITS.values()}
        self.around: dict[tuple[int, int, int], list[int]] = {}
        self.lengths: dict[int, set[int]] = {bit: set() for bit in FAMILY_BITS.values()}
        self.large: dict[int, dict[int, Intervals]] = {bit: {} for bit in FAMILY_BITS.values()}
        for i, rule in enumerate(rules):
            counts = dict.fromkeys(FAMILY_BITS.values(), 0)
            for r in field(rule):
                counts[FAMILY_BITS[r.family]] += 1
            for bit, count in counts.items():
                if count > LARGE_FIELD:
                    self.large[bit][i] = spans(i, bit)
            for r in field(rule):
                bit = FAMILY_BITS[r.family]
                if i in self.large[bit]:
                    continue
                self.starts[bit].append((r.first, i))
                self.entries[bit].append((r.first, r.last, i))
                self.around.setdefault((bit, r.prefix_len, r.network), []).append(i)
                self.lengths[bit].add(r.prefix_len)
        for starts in self.starts.values():
            starts.sort()
        self.widths = {FAMILY_BITS[f]: f.width for f in Family}

    def query(self, family_bit: int, spans: Intervals, first: int, stop: int) -> set[int]:
        """Rules at positions `first` to `stop` - 1 whose field overlaps `spans`."""
        out = {i for i in self.anywhere if first <= i < stop}
        small = self.entries[family_bit]
        if len(spans) * (len(self.lengths[family_bit]) + 1) <= len(small):
            found = self._by_spans(family_bit, spans)
            out.update(i for i in found if first <= i < stop)
        else:
            # Few CIDRs against many spans (the region a blocklist leaves): test each CIDR.
            for lo, hi, i in small:
                if first <= i < stop and i not in out and intervals_overlap(((lo, hi),), spans):
                    out.add(i)
        for i, theirs in self.large[family_bit].items():
            if first <= i < stop and i not in out and intervals_overlap(theirs, spans):
                out.add(i)
        return out

    def _by_spans(self, family_bit: int, spans: Intervals) -> set[int]:
        """Indexed rules with a CIDR that starts inside a span or holds its start."""
        out: set[int] = set()
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
        self._sources = _AddressIndex(policy.rules, lambda rule: rule.sources, self._src_spans)
        self._destinations = _AddressIndex(
            policy.rules, lambda rule: rule.destinations, self._dst_spans
        )

    def _src_spans(self, i: int, family_bit: int) -> Intervals:
        """Rule `i`'s merged sources of one family, from its cubes (none: it matches none)."""
        return next((c.src for c in self.cubes[i] if c.family & family_bit), ())

    def _dst_spans(self, i: int, family_bit: int) -> Intervals:
        return next((c.dst for c in self.cubes[i] if c.family & family_bit), ())

    def overlapping(
        self, region: Region, before: int | None = None, after: int | None = None
    ) -> list[int]:
        """Positions of the rules that share a packet with `region`, in evaluation order;
        with `before`, only the rules placed before that position, with `after` only those
        placed after it."""
        first = 0 if after is None else after + 1
        stop = len(self.rules) if before is None else before
        found: set[int] = set()
        for cube in region:
            for bit in FAMILY_BITS.values():
                if cube.family & bit:
                    found |= self._candidates(bit, cube.src, cube.dst, first, stop)
        return sorted(i for i in found if region_overlaps(region, self.cubes[i]))

    def any_overlapping(self, cube: Cube) -> Cube | None:
        """A cube of some rule that shares a packet with `cube` (no matter which), or None."""
        found: set[int] = set()
        for bit in FAMILY_BITS.values():
            if cube.family & bit:
                found |= self._candidates(bit, cube.src, cube.dst, 0, len(self.rules))
        for i in found:
            for other in self.cubes[i]:
                if overlaps(cube, other):
                    return other
        return None

    def _candidates(
        self, family_bit: int, src: Intervals, dst: Intervals, first: int, stop: int
    ) -> set[int]:
        by_source = self._sources.query(family_bit, src, first, stop)
        # A policy that names destinations rather than sources narrows better by them.
        if len(by_source) * 4 <= stop - first:
            return by_source
        by_destination = self._destinations.query(family_bit, dst, first, stop)
        return by_source & by_destination
