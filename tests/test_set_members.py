"""The member records of an editable set (loader/live/members.py): which removals are exact.

A removal is exact only when no other record holds the prefix, is held by it or equals it.
`Members` answers that from the sorted records alone (what `fw-load set` does from a cold
start); `Shorter`, the index a resident daemon keeps between changes, must answer the same,
and must follow each change as a fresh index of the new records would.
"""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from fwc.artifact import sets
from fwc.compiler.policy.ir import AddressRange, Family
from fwc.loader.live.members import Members, Shorter

# prefixes drawn from a small space, so that many hold or equal one another
_V4 = st.tuples(st.just(Family.IPV4), st.integers(0, 255), st.integers(24, 32))
_V6 = st.tuples(st.just(Family.IPV6), st.integers(0, 255), st.integers(120, 128))
_RECORD = st.tuples(st.one_of(_V4, _V6), st.sampled_from([sets.MEMBER_KIND, sets.OTHER_KIND]))


def _prefix(family: Family, low: int, prefix_len: int) -> AddressRange:
    base = 0x0A000000 if family is Family.IPV4 else 0x20010DB8 << 96
    host = family.width - prefix_len
    return AddressRange(family, (base | low) >> host << host, prefix_len)


def _records(drawn: list[tuple[tuple[Family, int, int], int]]) -> tuple[bytes, list[bytes]]:
    records = sorted(
        {
            sets.member(p.family.value, p.network, p.prefix_len, kind)
            for (family, low, plen), kind in drawn
            for p in [_prefix(family, low, plen)]
        }
    )
    return b"".join(records) + bytes(3 * sets.MEMBER.size), records


def _range(record: bytes) -> AddressRange:
    family, network, prefix_len, _ = sets.unpack(record)
    return AddressRange(Family(family), network, prefix_len)


def _overlapped(records: list[bytes], at: int) -> bool:
    """The definition: another record's range meets this one's (prefixes nest or are equal)."""
    mine = _range(records[at])
    return any(
        other.family is mine.family and other.first <= mine.last and mine.first <= other.last
        for i, record in enumerate(records)
        if i != at
        for other in [_range(record)]
    )


@settings(max_examples=300, deadline=None)
@given(st.lists(_RECORD, min_size=1, max_size=60))
def test_cold_and_kept_answers_match_the_definition(
    drawn: list[tuple[tuple[Family, int, int], int]],
) -> None:
    data, records = _records(drawn)
    members = Members(data)
    assert members.count == len(records)
    shorter = Shorter(data, members.count)
    for at, record in enumerate(records):
        if record[sets.KEY] != sets.MEMBER_KIND:
            continue
        prefix = _range(record)
        expected = _overlapped(records, at)
        assert members.overlapped(prefix, at) is expected, prefix
        assert members.overlapped(prefix, at, shorter) is expected, prefix


@settings(max_examples=200, deadline=None)
@given(
    st.lists(_RECORD, min_size=1, max_size=40),
    st.lists(st.one_of(_V4, _V6), max_size=15),
    st.data(),
)
def test_the_kept_index_follows_each_change(
    drawn: list[tuple[tuple[Family, int, int], int]],
    adds: list[tuple[Family, int, int]],
    data: st.DataObject,
) -> None:
    old_data, records = _records(drawn)
    old = Members(old_data)
    kept = Shorter(old_data, old.count)
    # what fw-load removes: members no other record meets (the others are refused)
    exact = [
        _range(r)
        for at, r in enumerate(records)
        if r[sets.KEY] == sets.MEMBER_KIND and not _overlapped(records, at)
    ]
    removes = data.draw(st.lists(st.sampled_from(exact), unique=True)) if exact else []
    added = [_prefix(*a) for a in adds]
    change = old.change(added, [r for r in removes if r not in set(added)])
    assert not change.missing
    assert old.change(added, [r for r in removes if r not in set(added)], kept) == change
    new_data, _ = old.apply(change)
    kept.change(old, change)
    fresh = Shorter(new_data, len(new_data) // sets.MEMBER.size)
    assert kept.keys == fresh.keys
    assert +kept.lengths == +fresh.lengths
