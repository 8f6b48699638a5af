"""First-match layers: which rules of a policy may share one set or map lookup.

A rule gets a level one above every earlier rule it conflicts with (a packet could
match both). Evaluating the levels in order, each level as one lookup, gives the
first-match verdict as long as rules that conflict sit on different levels: the
first level a packet hits then holds only rules agreeing with its first match.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from fwc.compiler.policy.ir import AddressRange, Family, PortRange, Rule


def normal_sources(rule: Rule) -> tuple[AddressRange, ...]:
    """The rule's source networks without those another of its networks covers."""
    return _outermost(rule.sources)


def normal_destinations(rule: Rule) -> tuple[AddressRange, ...]:
    return _outermost(rule.destinations)


def _outermost(ranges: Sequence[AddressRange]) -> tuple[AddressRange, ...]:
    out: list[AddressRange] = []
    for r in sorted(ranges, key=lambda r: (r.family, r.first, r.prefix_len)):
        if out and out[-1].family is r.family and out[-1].first <= r.first <= out[-1].last:
            continue
        out.append(r)
    return tuple(out)


def merged_ports(ranges: Sequence[PortRange]) -> tuple[PortRange, ...]:
    """The same ports as disjoint, sorted ranges (adjacent ones joined)."""
    out: list[PortRange] = []
    for r in sorted(ranges):
        if out and r.first <= out[-1].last + 1:
            out[-1] = PortRange(out[-1].first, max(out[-1].last, r.last))
        else:
            out.append(r)
    return tuple(out)


def _nets_overlap(a: Sequence[AddressRange], b: Sequence[AddressRange]) -> bool:
    if not a or not b:
        return True
    return any(
        x.family is y.family and x.first <= y.last and y.first <= x.last for x in a for y in b
    )


def _ports_overlap(a: Sequence[PortRange], b: Sequence[PortRange]) -> bool:
    if not a or not b:
        return True
    return any(x.first <= y.last and y.first <= x.last for x in a for y in b)


def overlap(a: Rule, b: Rule) -> bool:
    """Whether some packet could match both rules (never False when one could)."""
    pa, pb = a.protocol.number, b.protocol.number
    if pa is not None and pb is not None and pa != pb:
        return False
    if not _nets_overlap(a.sources, b.sources) or not _nets_overlap(a.destinations, b.destinations):
        return False
    if not _ports_overlap(a.source_ports, b.source_ports):
        return False
    if not _ports_overlap(a.destination_ports, b.destination_ports):
        return False
    if a.tcp_flags_set & b.tcp_flags_clear or b.tcp_flags_set & a.tcp_flags_clear:
        return False
    if (a.has_ports or b.has_ports) and (a.icmp_types or b.icmp_types):
        return False
    return not (a.icmp_types and b.icmp_types and not set(a.icmp_types) & set(b.icmp_types))


@dataclass
class _SourceIndex:
    """Earlier rules by source network: finds those whose sources overlap a new rule's."""

    starts: dict[Family, list[tuple[int, int, int]]]  # (first, last, rule id), sorted
    by_block: dict[tuple[Family, int, int], list[int]]  # (family, network, prefix) -> rule ids
    anywhere: list[int]  # rules with no source

    def candidates(self, rule: Rule) -> set[int]:
        if not rule.sources:
            return set(range(rule.id))
        found = set(self.anywhere)
        for r in rule.sources:
            starts = self.starts.setdefault(r.family, [])
            lo = bisect.bisect_left(starts, (r.first, -1, -1))
            hi = bisect.bisect_right(starts, (r.last, 1 << 130, 1 << 30))
            found.update(rid for _, _, rid in starts[lo:hi])
            width = r.family.width
            for plen in range(r.prefix_len + 1):
                net = r.first & ~((1 << (width - plen)) - 1)
                found.update(self.by_block.get((r.family, net, plen), ()))
        return found

    def add(self, rule: Rule) -> None:
        if not rule.sources:
            self.anywhere.append(rule.id)
        for r in rule.sources:
            bisect.insort(self.starts.setdefault(r.family, []), (r.first, r.last, rule.id))
            self.by_block.setdefault((r.family, r.first, r.prefix_len), []).append(rule.id)


def levels(rules: Sequence[Rule], conflict: Callable[[Rule, Rule], bool]) -> list[int]:
    """Each rule's level (from 0): above every earlier rule it overlaps and conflicts with."""
    index = _SourceIndex({}, {}, [])
    out: list[int] = []
    by_id = {r.id: i for i, r in enumerate(rules)}
    for i, rule in enumerate(rules):
        level = 0
        for rid in index.candidates(rule):
            j = by_id.get(rid)
            if j is None or j >= i or out[j] < level:
                continue
            earlier = rules[j]
            if overlap(earlier, rule) and conflict(earlier, rule):
                level = out[j] + 1
        out.append(level)
        index.add(rule)
    return out
