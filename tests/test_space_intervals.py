"""Interval arithmetic on the long side (a blocklist's spans) agrees with sets of points."""

from __future__ import annotations

import itertools

from hypothesis import given
from hypothesis import strategies as st

from fwc.compiler.analysis.space import (
    Intervals,
    intervals_overlap,
    meet_intervals,
    minus_intervals,
)


@st.composite
def spans(draw: st.DrawFn, most: int) -> Intervals:
    points = sorted(draw(st.sets(st.integers(0, 2000), min_size=2, max_size=2 * most)))
    if len(points) % 2:
        points.pop()
    return tuple((points[i], points[i + 1]) for i in range(0, len(points), 2))


def points(spans: Intervals) -> set[int]:
    return {p for lo, hi in spans for p in range(lo, hi + 1)}


def disjoint(spans: Intervals) -> bool:
    return all(a[1] < b[0] for a, b in itertools.pairwise(spans))


@given(spans(3), spans(300), st.booleans())
def test_few_against_many(short: Intervals, long: Intervals, swap: bool) -> None:
    a, b = (long, short) if swap else (short, long)
    met, rest = meet_intervals(a, b), minus_intervals(a, b)
    assert points(met) == points(a) & points(b)
    assert points(rest) == points(a) - points(b)
    assert disjoint(met) and disjoint(rest)
    assert intervals_overlap(a, b) == bool(points(a) & points(b))
    assert minus_intervals(a, b) == rest  # a second call (cached for long sides) agrees
