"""Tables for the cube algebra, for writing cubes as rule matches, and for proofs over regions."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fwc.compiler.analysis.index import RuleIndex
from fwc.compiler.analysis.match import BYTE_VALUES, UNIVERSE, Selection, flag_values
from fwc.compiler.analysis.prove import prove
from fwc.compiler.analysis.region import _flag_terms, match_of, writable
from fwc.compiler.analysis.space import (
    Intervals,
    meet_intervals,
    minus,
    minus_intervals,
    overlaps,
    union_intervals,
)
from fwc.compiler.policy.ir import Action, AddressRange, Family, PortRange, Protocol
from tests.strategies import policy_from_document


@pytest.mark.parametrize(
    ("a", "b", "meet", "rest"),
    [
        (((0, 9),), ((3, 4),), ((3, 4),), ((0, 2), (5, 9))),
        (((0, 9),), ((0, 9),), ((0, 9),), ()),
        (((0, 1), (5, 6)), ((1, 5),), ((1, 1), (5, 5)), ((0, 0), (6, 6))),
        (((0, 3),), ((4, 9),), (), ((0, 3),)),
    ],
)
def test_interval_algebra(a: Intervals, b: Intervals, meet: Intervals, rest: Intervals) -> None:
    assert meet_intervals(a, b) == meet
    assert minus_intervals(a, b) == rest
    assert union_intervals(meet, rest) == a


def _values(spans: Intervals) -> set[int]:
    return {v for lo, hi in spans for v in range(lo, hi + 1)}


spans = st.lists(st.tuples(st.integers(0, 40), st.integers(0, 6)), max_size=4).map(
    lambda pairs: union_intervals((), tuple((lo, lo + n) for lo, n in pairs))
)


@settings(max_examples=200, deadline=None)
@given(spans, spans)
def test_interval_algebra_against_sets(a: Intervals, b: Intervals) -> None:
    assert _values(meet_intervals(a, b)) == _values(a) & _values(b)
    assert _values(minus_intervals(a, b)) == _values(a) - _values(b)
    assert _values(union_intervals(a, b)) == _values(a) | _values(b)


def test_cube_minus_is_disjoint_and_exact() -> None:
    a = UNIVERSE[0]
    b = a._replace(src=((10, 20),), dport=((22, 22),))
    pieces = minus(a, b)
    assert not any(overlaps(p, b) for p in pieces)
    assert not any(overlaps(p, q) for i, p in enumerate(pieces) for q in pieces[i + 1 :])
    assert [p.src for p in pieces] == [((0, 9), (21, 2**32 - 1)), ((10, 20),)]
    assert pieces[1].dport == ((0, 21), (23, 65535))


@settings(max_examples=100, deadline=None)
@given(st.integers(0, (1 << 256) - 1))
def test_flag_terms_cover_exactly(values: int) -> None:
    union = 0
    for must_set, must_clear in _flag_terms(values & BYTE_VALUES):
        part = flag_values(must_set, must_clear) & BYTE_VALUES
        assert not union & part
        union |= part
    assert union == values & BYTE_VALUES


def test_flag_terms_are_few_for_a_pattern() -> None:
    assert _flag_terms(flag_values(0x02, 0x10)) == ((0x02, 0x10),)
    assert len(_flag_terms(BYTE_VALUES & ~flag_values(0x02, 0x10))) == 2


def test_match_of_a_written_cube() -> None:
    cube = UNIVERSE[0]._replace(
        src=((0x0A000000, 0x0A0000FF),), dport=((22, 22), (80, 81)), tcp_flags=flag_values(2, 16)
    )
    [one] = writable(cube)
    assert match_of(one) == {
        "protocol": "tcp",
        "source_cidrs": ["10.0.0.0/24"],
        "destination_cidrs": ["0.0.0.0/0"],
        "source_ports": [],
        "destination_ports": [22, "80-81"],
        "tcp_flags": "SYN,!ACK",
        "icmp_types": [],
        "fragment": "first-or-none",
    }


DB = {
    "version": 1,
    "name": "db",
    "default_action": "deny",
    "rules": [
        {"name": "deny_api_half", "priority": 1, "action": "deny", "protocol": "tcp",
         "source_cidrs": ["10.1.0.0/17"]},
        {"name": "allow_db", "priority": 2, "action": "allow", "protocol": "tcp",
         "source_cidrs": ["10.1.0.0/16"], "destination_ports": [5432]},
    ],
}  # fmt: skip


def test_prove_names_the_counterexample_region_and_rule() -> None:
    index = RuleIndex(policy_from_document(DB))
    selection = Selection(
        Protocol.TCP,
        sources=(AddressRange(Family.IPV4, 0x0A010000, 16),),
        destinations=(AddressRange(Family.IPV4, 0x0A020005, 32),),
        destination_ports=(PortRange(5432, 5432),),
    )
    [counter] = prove(index, selection, Action.ALLOW)
    assert counter.rule is not None and counter.rule.name == "deny_api_half"
    assert counter.match["source_cidrs"] == ["10.1.0.0/17"]
    assert counter.example["dport"] == 5432 and counter.example["src"].startswith("10.1.")
    narrow = Selection(
        Protocol.TCP,
        sources=(AddressRange(Family.IPV4, 0x0A018000, 17),),
        destination_ports=(PortRange(5432, 5432),),
    )
    assert prove(index, narrow, Action.ALLOW) == []
