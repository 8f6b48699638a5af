"""Classification precompute for the tables strategy: rules -> per-field classes and group combos.

Pure data, no kernel: `build_tables` is what the compiler seeds, `lookup` is the per-packet walk
that the XDP program performs, written in Python so it can be property-tested against the IR.
"""

from __future__ import annotations

import bisect
import functools
import itertools
import operator
from array import array
from collections import Counter, defaultdict
from collections.abc import Hashable, ItemsView, Iterator, Mapping, Sequence
from dataclasses import dataclass

from fwc.compiler.policy.interfaces import NO_INTERFACES, InterfaceClasses
from fwc.compiler.policy.ir import (
    CT_STATES,
    IPPROTO_ICMP,
    IPPROTO_ICMPV6,
    IPPROTO_TCP,
    IPPROTO_UDP,
    AddressRange,
    Family,
    PortRange,
    Protocol,
    Rule,
    SetEntries,
)

MAX_GROUPS = 32
# A signature group with more rules than this is split in evaluation order while groups remain:
# each part sees only its own rules' boundaries, which keeps the cross products small. Every
# part is one more combo lookup for packets its rules cover, so parts are not made smaller.
SPLIT_ABOVE = 1024
# Fields of a combo key, in key order; bit i of a group signature is FIELDS[i].
FIELDS = ("src", "dst", "l4", "sport", "dport")
SRC, DST, L4, SPORT, DPORT = range(5)
# The L4 state of a packet: protocol class x non-first fragment x one byte (TCP flags or ICMP type);
# with interface classes, L4_KEYS such keys per class of the ingress interface (ifclass.py).
PCLASS_OTHER, PCLASS_TCP, PCLASS_UDP, PCLASS_ICMP, PCLASS_ICMPV6 = range(5)
PCLASSES = 5
L4_KEYS = PCLASSES * 2 * 256
PORTS = 65536
# With state rules, the L4 table holds CT_ROWS blocks of rows (each of L4_KEYS per interface
# class): block 0 lets every state rule match (the program's first pass), block 1 is an
# untracked packet (no state rule matches), block 2 + k a packet in the state of bit k of
# CT_STATES. The program looks again in the block of the packet's state only when the winner
# of the first pass is a state rule whose states do not hold (docs/tables.md).
CT_ROW_ANY, CT_ROW_UNTRACKED = 0, 1
CT_ROWS = 2 + len(CT_STATES)
# Upper bound of combo entries over all groups; beyond it the policy is too large for tables.
MAX_COMBOS = 2_000_000
# A group's class tuple is one linear index (mixed radix over its fields' class counts). Groups
# whose whole cross product fits in this many slots, smallest first, share one dense array read
# with an inlined load; the others share one hash keyed by the u64 index.
ARRAY_SLOTS = 1 << 18
MAX_INDEX = 1 << 63
MAX_PORT_CLASSES = 65536
MAX_L4_CLASSES = 65536

_PCLASS_OF_PROTOCOL = {
    IPPROTO_TCP: PCLASS_TCP,
    IPPROTO_UDP: PCLASS_UDP,
    IPPROTO_ICMP: PCLASS_ICMP,
    IPPROTO_ICMPV6: PCLASS_ICMPV6,
}


class TablesTooLarge(Exception):
    """The policy's classification tables would exceed the strategy's limits."""


@dataclass(frozen=True)
class PacketFields:
    """What the XDP program extracts from a parsed IP packet (docs/semantics.md).

    `sport`, `dport` are 0 unless the packet is TCP/UDP and not a non-first fragment; `aux` is the
    TCP flags byte or the ICMP type under the same condition, else 0.
    """

    family: Family
    src: int
    dst: int
    protocol: int
    nonfirst: bool
    sport: int = 0
    dport: int = 0
    aux: int = 0
    ifclass: int = 0  # the ingress interface's class (compiler/policy/interfaces.py)
    ctrow: int = CT_ROW_ANY  # the block of L4 rows of the packet's state (ct_row)


def ct_row(state: str | None) -> int:
    """The L4 block of a packet in connection state `state` (None: untracked)."""
    if state is None:
        return CT_ROW_UNTRACKED
    return 2 + CT_STATES[state].bit_length() - 1


def ct_row_passes(ct_states: int, row: int) -> bool:
    """Whether a rule whose states are `ct_states` (0: it names none) matches in `row`."""
    if not ct_states or row == CT_ROW_ANY:
        return True
    return row != CT_ROW_UNTRACKED and bool(ct_states >> (row - 2) & 1)


def pclass(protocol: int) -> int:
    return _PCLASS_OF_PROTOCOL.get(protocol, PCLASS_OTHER)


def l4_index(protocol: int, nonfirst: bool, aux: int, ifclass: int = 0) -> int:
    return ifclass * L4_KEYS + (pclass(protocol) * 2 + int(nonfirst)) * 256 + aux


@dataclass(frozen=True)
class AddressEntry:
    """One LPM entry: a prefix and, per group, the class of the addresses it is longest for."""

    family: Family
    network: int
    prefix_len: int
    classes: tuple[int, ...]


class Combos(Mapping[int, int]):
    """Linear index -> rule id, held as two arrays sorted by index.

    A 50k-rule policy has about 800k combos: as a dict of Python ints they took about 100 MB,
    as arrays 12 bytes each. Iteration is in index order.
    """

    def __init__(self, indexes: array[int], rules: array[int]) -> None:
        self.indexes = indexes
        self.rules = rules

    @classmethod
    def of(cls, combos: Mapping[int, int]) -> Combos:
        ordered = sorted(combos.items())
        return cls(array("Q", (i for i, _ in ordered)), array("I", (r for _, r in ordered)))

    def __getitem__(self, index: int) -> int:
        at = bisect.bisect_left(self.indexes, index)
        if at < len(self.indexes) and self.indexes[at] == index:
            return self.rules[at]
        raise KeyError(index)

    def __iter__(self) -> Iterator[int]:
        return iter(self.indexes)

    def __len__(self) -> int:
        return len(self.indexes)

    def items(self) -> ItemsView[int, int]:
        return _ComboItems(self)


class _ComboItems(ItemsView[int, int]):
    """(index, rule id) pairs from the two arrays, without a search per index."""

    _mapping: Combos

    def __iter__(self) -> Iterator[tuple[int, int]]:
        return zip(self._mapping.indexes, self._mapping.rules, strict=True)


@dataclass(frozen=True)
class Tables:
    """The classification tables of one policy; class 0 of a signature field is the empty class."""

    ngroups: int
    signatures: tuple[int, ...]  # per group: bit i set when FIELDS[i] is part of its classes
    firsts: tuple[int, ...]  # per group: its lowest rule id; groups are in this order
    src: tuple[AddressEntry, ...]
    dst: tuple[AddressEntry, ...]
    l4: tuple[tuple[int, ...], ...]  # L4_KEYS entries per interface class, per-group classes
    sport: tuple[int, ...]  # PORTS entries: port -> port class
    dport: tuple[int, ...]
    sport_classes: tuple[tuple[int, ...], ...]  # port class -> per-group classes
    dport_classes: tuple[tuple[int, ...], ...]
    bases: tuple[int, ...]  # per group: linear index of its all-zero class tuple
    mults: tuple[tuple[int, ...], ...]  # per group, per field: radix weight (0 outside signature)
    array_size: int  # linear indexes below this are array slots, the rest hash keys
    combos: Combos  # linear index -> rule id
    ct_rows: int = 1  # blocks of L4 rows: CT_ROWS with state rules, else 1
    sets: tuple[SetEdit, ...] = ()  # per policy set, what a live change of its members needs


@dataclass(frozen=True)
class SetEdit:
    """What changing the members of one address set without a compile needs (docs/tables.md,
    "Live set changes"): per address field that names it, per group, each class id's class
    with the set's predicates added and removed (-1: no such class), and the addresses its
    rules list beside it. `refused` says why the set cannot change live ("" when it can)."""

    name: str
    refused: str = ""
    fields: tuple[int, ...] = ()  # SRC and/or DST
    add: tuple[tuple[tuple[int, ...], ...], ...] = ()  # per field, per group, class -> class
    remove: tuple[tuple[tuple[int, ...], ...], ...] = ()
    members: tuple[AddressRange, ...] = ()
    others: tuple[AddressRange, ...] = ()


def linear(tables: Tables, group: int, classes: Sequence[int]) -> int:
    """The combo index of a group's class tuple."""
    mults = tables.mults[group]
    return tables.bases[group] + sum(c * m for c, m in zip(classes, mults, strict=True))


def field_mask(tables: Tables, field: int, classes: Sequence[int]) -> int:
    """Bit g set when group g can still match on `field`: its class there is not 0, or the
    group's signature leaves the field out. The program ANDs the five fields' masks and visits
    only the groups left, so a packet no rule covers visits none."""
    return sum(
        1 << g for g in range(tables.ngroups) if classes[g] or not tables.signatures[g] >> field & 1
    )


def lookup(tables: Tables, packet: PacketFields) -> int | None:
    """The winning rule id, or None for the default: the same steps as the XDP program."""
    classes = (
        _longest(tables.src, packet.family, packet.src),
        _longest(tables.dst, packet.family, packet.dst),
        tables.l4[
            packet.ctrow * (len(tables.l4) // tables.ct_rows)
            + l4_index(packet.protocol, packet.nonfirst, packet.aux, packet.ifclass)
        ],
        tables.sport_classes[tables.sport[packet.sport]],
        tables.dport_classes[tables.dport[packet.dport]],
    )
    candidates = functools.reduce(
        operator.and_, (field_mask(tables, f, c) for f, c in enumerate(classes))
    )
    best: int | None = None
    for group in range(tables.ngroups):
        if not candidates >> group:
            break
        if not candidates >> group & 1:
            continue
        if best is not None and best < tables.firsts[group]:
            break  # every later group holds only later rules
        rule = tables.combos.get(linear(tables, group, [c[group] for c in classes]))
        if rule is not None and (best is None or rule < best):
            best = rule
    return best


def _longest(entries: Sequence[AddressEntry], family: Family, address: int) -> tuple[int, ...]:
    best: AddressEntry | None = None
    for e in entries:
        shift = family.width - e.prefix_len
        if (
            e.family is family
            and address >> shift == e.network >> shift
            and (best is None or e.prefix_len > best.prefix_len)
        ):
            best = e
    if best is None:
        raise ValueError(f"no root entry for {family.name}")
    return best.classes


# What each rule says about each field; equal predicates share classes. The L4 predicate's last
# items are the mask of the interface classes the rule accepts (EVERY_CLASS: it names none) and
# the rule's CT_STATES bits (0: it names none).
L4Predicate = tuple[Protocol, bool, bool, int, int, tuple[int, ...], int, int]
EVERY_CLASS = -1


def _l4_predicate(rule: Rule, ifclasses: InterfaceClasses) -> L4Predicate | None:
    if (
        rule.protocol is Protocol.ANY
        and not rule.needs_l4
        and not rule.has_interfaces
        and not rule.has_state
    ):
        return None
    return (
        rule.protocol,
        rule.needs_l4,
        rule.has_ports,
        rule.tcp_flags_set,
        rule.tcp_flags_clear,
        rule.icmp_types,
        ifclasses.rule_mask(rule) if rule.has_interfaces else EVERY_CLASS,
        rule.ct_states,
    )


def _predicates(rule: Rule, ifclasses: InterfaceClasses) -> tuple[Hashable | None, ...]:
    """Per field, the rule's predicate, or None when the rule does not constrain the field."""
    return (
        rule.sources or None,
        rule.destinations or None,
        _l4_predicate(rule, ifclasses),
        rule.source_ports or None,
        rule.destination_ports or None,
    )


@functools.cache
def _l4_indices(pred: L4Predicate, classes: int, ct_rows: int = 1) -> tuple[int, ...]:
    block = L4_KEYS * classes
    *stateless, ct_states = pred
    base = _l4_block_indices(tuple(stateless), classes)
    return tuple(
        row * block + i for row in range(ct_rows) if ct_row_passes(ct_states, row) for i in base
    )


@functools.cache
def _l4_block_indices(pred: tuple[Hashable, ...], classes: int) -> tuple[int, ...]:
    return tuple(i for i in range(L4_KEYS * classes) if _l4_matches(pred, i))


def _l4_matches(pred: tuple[Hashable, ...], index: int) -> bool:
    protocol, needs_l4, has_ports, flags_set, flags_clear, icmp_types, ifmask = pred
    assert isinstance(protocol, Protocol) and isinstance(icmp_types, tuple)
    assert isinstance(ifmask, int) and isinstance(flags_set, int) and isinstance(flags_clear, int)
    ifclass, index = divmod(index, L4_KEYS)
    if not ifmask >> ifclass & 1:
        return False
    pc, rest = divmod(index, 512)
    nonfirst, aux = divmod(rest, 256)
    number = protocol.number
    if number is not None and pc != pclass(number):
        return False
    if needs_l4 and nonfirst:
        return False
    if has_ports and pc not in (PCLASS_TCP, PCLASS_UDP):
        return False
    if (flags_set or flags_clear) and (
        pc != PCLASS_TCP or aux & flags_set != flags_set or aux & flags_clear
    ):
        return False
    return not icmp_types or (pc in (PCLASS_ICMP, PCLASS_ICMPV6) and aux in icmp_types)


class _Interner:
    """Dense ids for predicate sets; id 0 is the empty set."""

    def __init__(self) -> None:
        self.ids: dict[frozenset[int], int] = {frozenset(): 0}
        self.sets: list[frozenset[int]] = [frozenset()]

    def id(self, members: frozenset[int]) -> int:
        cid = self.ids.setdefault(members, len(self.ids))
        if cid == len(self.sets):
            self.sets.append(members)
        return cid

    def members_to_classes(self) -> dict[int, list[int]]:
        out: dict[int, list[int]] = defaultdict(list)
        for members, cid in self.ids.items():
            for m in members:
                out[m].append(cid)
        return out


@dataclass
class _Group:
    signature: int
    rules: list[tuple[int, tuple[Hashable | None, ...]]]  # (rule id, predicates), eval order


def _groups(rules: Sequence[Rule], ifclasses: InterfaceClasses) -> list[_Group]:
    """Rules by which fields they constrain; a field a rule leaves open costs that group nothing."""
    seen: set[tuple[Hashable | None, ...]] = set()
    by_sig: dict[int, _Group] = {}
    for rule in rules:
        preds = _predicates(rule, ifclasses)
        if preds in seen:
            continue  # an identical earlier rule always wins
        seen.add(preds)
        sig = sum(1 << f for f, p in enumerate(preds) if p is not None)
        by_sig.setdefault(sig, _Group(sig, [])).rules.append((rule.id, preds))
    groups = list(by_sig.values())
    while len(groups) > MAX_GROUPS:
        groups = _merge_smallest(groups)
    while groups and len(groups) < MAX_GROUPS:
        big = max(groups, key=lambda g: len(g.rules))
        if len(big.rules) <= SPLIT_ABOVE:
            break
        half = len(big.rules) // 2
        groups.remove(big)
        groups += [_Group(big.signature, big.rules[:half]), _Group(big.signature, big.rules[half:])]
    return sorted(groups, key=lambda g: g.rules[0][0])


def _merge_smallest(groups: list[_Group]) -> list[_Group]:
    """Merge the smallest group into the one whose signature grows least (a merge stays exact)."""
    small = min(groups, key=lambda g: (len(g.rules), g.rules[0][0]))
    rest = [g for g in groups if g is not small]
    into = min(
        rest,
        key=lambda g: (
            bin(g.signature | small.signature).count("1") - bin(g.signature).count("1"),
            len(g.rules),
        ),
    )
    into.signature |= small.signature
    into.rules = sorted(into.rules + small.rules)
    return rest


# What a rule that leaves a field open matches, in a group whose signature has that field.
_OPEN: tuple[Hashable, ...] = (
    (AddressRange(Family.IPV4, 0, 0), AddressRange(Family.IPV6, 0, 0)),
    (AddressRange(Family.IPV4, 0, 0), AddressRange(Family.IPV6, 0, 0)),
    (Protocol.ANY, False, False, 0, 0, (), EVERY_CLASS, 0),
    (PortRange(0, PORTS - 1),),
    (PortRange(0, PORTS - 1),),
)


def _pred(group: _Group, preds: tuple[Hashable | None, ...], field: int) -> Hashable | None:
    """The rule's predicate on `field` within its group; None when the group ignores the field."""
    if not group.signature >> field & 1:
        return None
    value = preds[field]
    return _OPEN[field] if value is None else value


def _field_preds(group: _Group, field: int) -> dict[Hashable, int]:
    preds: dict[Hashable, int] = {}
    for _, p in group.rules:
        value = _pred(group, p, field)
        if value is not None:
            preds.setdefault(value, len(preds))
    return preds


def _address_classes(
    groups: Sequence[_Group], field: int
) -> tuple[tuple[AddressEntry, ...], list[_Interner]]:
    """LPM entries for one address field; each distinct prefix holds the classes of its chain.

    Prefixes nest or are disjoint, so the addresses whose longest match is prefix X are covered by
    exactly X and its ancestors: X's class is the set of predicates owning any of them.
    """
    # (family number, network, prefix length) -> (group, predicate) pairs owning it. Plain
    # ints in the keys: an enum member hashes in Python, a million times over.
    owners: dict[tuple[int, int, int], list[tuple[int, int]]] = {(4, 0, 0): [], (6, 0, 0): []}
    interners = [_Interner() for _ in groups]
    for gi, group in enumerate(groups):
        preds = _field_preds(group, field)
        for value, pid in preds.items():
            assert isinstance(value, tuple)
            for r in value:
                assert isinstance(r, AddressRange)
                key = (r.family._value_, r.network, r.prefix_len)
                owners.setdefault(key, []).append((gi, pid))
    # Address order, shorter first: a prefix comes after every prefix holding it, and its
    # parent (the longest of them) is on top of the stack of open prefixes. A prefix takes
    # its parent's predicate sets and adds its own; the result depends only on the parent's
    # class ids and the pairs it owns, so a blocklist's million prefixes under one parent
    # cost one set union.
    family_of = {f.value: f for f in Family}
    root_ids = tuple(0 for _ in groups)
    made: dict[tuple[tuple[int, ...], tuple[tuple[int, int], ...]], _Chain] = {}
    stack: list[tuple[int, int, _Chain]] = []  # (family number, last address, chain)
    entries = []
    for key in sorted(owners):
        number, network, plen = key
        while stack and (stack[-1][0] != number or stack[-1][1] < network):
            stack.pop()
        chain = stack[-1][2] if stack else root_ids
        mine = owners[key]
        if mine:
            memo = (chain, tuple(mine))
            known = made.get(memo)
            if known is None:
                known = made[memo] = _extend(chain, mine, groups, field, interners)
            chain = known
        width = 32 if number == 4 else 128
        stack.append((number, network | ((1 << (width - plen)) - 1), chain))
        entries.append(AddressEntry(family_of[number], network, plen, chain))
    return tuple(entries), interners


# A prefix's class id per group: only the groups owning the prefix build a set (one set per
# prefix and group took most of a 50k-rule compile's memory).
_Chain = tuple[int, ...]


def _extend(
    chain: _Chain,
    mine: list[tuple[int, int]],
    groups: Sequence[_Group],
    field: int,
    interners: list[_Interner],
) -> _Chain:
    """`chain` with the (group, predicate) pairs a prefix owns added."""
    ids = list(chain)
    for gi, pid in mine:
        if groups[gi].signature >> field & 1:
            interner = interners[gi]
            ids[gi] = interner.id(interner.sets[ids[gi]] | {pid})
    return tuple(ids)


def _port_classes(group: _Group, field: int, interner: _Interner) -> tuple[list[int], list[int]]:
    """Elementary port intervals (their starts) and each interval's class id."""
    preds = _field_preds(group, field)
    delta: dict[int, list[tuple[int, int]]] = defaultdict(list)
    for value, pid in preds.items():
        assert isinstance(value, tuple)
        for r in value:
            assert isinstance(r, PortRange)
            delta[r.first].append((pid, 1))
            delta[r.last + 1].append((pid, -1))
    active: dict[int, int] = defaultdict(int)
    starts = sorted(set(delta) | {0})
    classes = []
    for start in starts:
        if start >= PORTS:
            break
        for pid, d in delta.get(start, ()):
            active[pid] += d
            if not active[pid]:
                del active[pid]
        classes.append(interner.id(frozenset(active)))
    return starts[: len(classes)], classes


def _ports(
    groups: Sequence[_Group], field: int
) -> tuple[tuple[int, ...], tuple[tuple[int, ...], ...], list[dict[int, list[int]]]]:
    """Port -> port class array, port class -> per-group classes, and per group pred -> classes."""
    per_group = []
    interners = []
    for group in groups:
        interner = _Interner()
        if group.signature >> field & 1:
            per_group.append(_port_classes(group, field, interner))
        else:
            per_group.append(([0], [0]))
        interners.append(interner)
        if len(interner.ids) > MAX_PORT_CLASSES:
            raise TablesTooLarge(f"more than {MAX_PORT_CLASSES} {FIELDS[field]} classes")
    bounds = sorted({0} | {s for starts, _ in per_group for s in starts})
    cursor = [0] * len(groups)
    combined: dict[tuple[int, ...], int] = {}
    array: list[int] = []
    for i, start in enumerate(bounds):
        end = bounds[i + 1] if i + 1 < len(bounds) else PORTS
        for gi, (starts, _) in enumerate(per_group):
            while cursor[gi] + 1 < len(starts) and starts[cursor[gi] + 1] <= start:
                cursor[gi] += 1
        key = tuple(per_group[gi][1][cursor[gi]] for gi in range(len(groups)))
        cid = combined.setdefault(key, len(combined))
        array.extend([cid] * (end - start))
    return tuple(array), tuple(combined), [i.members_to_classes() for i in interners]


def _l4(
    groups: Sequence[_Group], classes: int, ct_rows: int
) -> tuple[tuple[tuple[int, ...], ...], list[dict[int, list[int]]]]:
    interners = [_Interner() for _ in groups]
    per_group: list[list[int]] = []
    keys = L4_KEYS * classes * ct_rows
    for group, interner in zip(groups, interners, strict=True):
        if not group.signature >> L4 & 1:
            per_group.append([0] * keys)
            continue
        members: list[list[int]] = [[] for _ in range(keys)]
        for value, pid in _field_preds(group, L4).items():
            assert isinstance(value, tuple)
            for index in _l4_indices(value, classes, ct_rows):
                members[index].append(pid)
        column = [interner.id(frozenset(m)) for m in members]
        per_group.append(column)
    rows = tuple(tuple(col[i] for col in per_group) for i in range(keys))
    return rows, [i.members_to_classes() for i in interners]


def build_tables(
    rules: Sequence[Rule],
    ifclasses: InterfaceClasses = NO_INTERFACES,
    sets: Sequence[tuple[str, SetEntries]] = (),
) -> Tables:
    """The classification tables for `rules` (evaluation order) with the L4 table indexed by
    `ifclasses` too, and by the packet's connection state when a rule has one, and what a live
    change of each of the policy's `sets` needs; raises TablesTooLarge."""
    groups = _groups(rules, ifclasses)
    ct_rows = CT_ROWS if any(r.has_state for r in rules) else 1
    src, src_interners = _address_classes(groups, SRC)
    dst, dst_interners = _address_classes(groups, DST)
    src_members = [i.members_to_classes() for i in src_interners]
    dst_members = [i.members_to_classes() for i in dst_interners]
    l4, l4_members = _l4(groups, len(ifclasses.classes), ct_rows)
    sport, sport_classes, sport_members = _ports(groups, SPORT)
    dport, dport_classes, dport_members = _ports(groups, DPORT)
    members = (src_members, dst_members, l4_members, sport_members, dport_members)
    mults = [_radix(group, [m[gi] for m in members]) for gi, group in enumerate(groups)]
    bases, array_size = _bases(mults)
    combos = _combos(groups, members, [m for m, _ in mults], bases)
    return Tables(
        ngroups=len(groups),
        signatures=tuple(g.signature for g in groups),
        firsts=tuple(g.rules[0][0] for g in groups),
        src=src,
        dst=dst,
        l4=l4,
        sport=sport,
        dport=dport,
        sport_classes=sport_classes,
        dport_classes=dport_classes,
        bases=tuple(bases),
        mults=tuple(m for m, _ in mults),
        array_size=array_size,
        combos=combos,
        ct_rows=ct_rows,
        sets=tuple(
            _set_edit(name, entries, rules, groups, (src_interners, dst_interners))
            for name, entries in sets
        ),
    )


def _set_edit(
    name: str,
    entries: SetEntries,
    rules: Sequence[Rule],
    groups: Sequence[_Group],
    interners: tuple[Sequence[_Interner], Sequence[_Interner]],
) -> SetEdit:
    """What a live change of set `name` needs, or why it cannot change live.

    Adding prefix p to the set makes every predicate that lists the set own p, so an address
    in p gets its class with those predicates added; removing p (when nothing else those
    predicates list overlaps p) gets it with them removed. Both are exact only when no rule
    lists the same addresses without naming the set (it shares their predicate).
    """
    if entries and not isinstance(entries[0], AddressRange):
        return SetEdit(name, "it holds ports; port sets change only with a compile")
    members = tuple(e for e in entries if isinstance(e, AddressRange))
    fields: list[int] = []
    adds, removes = [], []
    others: Counter[AddressRange] = Counter()
    for field in (SRC, DST):
        users = [r for r in rules if name in _named(r, field)]
        if not users:
            continue
        for rule in users:
            beside = [s for s in _named(rule, field) if s != name]
            if beside:
                return SetEdit(
                    name, f"rule `{rule.name}` lists it with set `{beside[0]}` in one field"
                )
            others.update(Counter(_listed(rule, field)) - Counter(members))
        values = {_listed(r, field) for r in users}
        if _OPEN[field] in values:
            return SetEdit(name, "a rule that names it matches every address")
        shared = next(
            (r for r in rules if name not in _named(r, field) and _listed(r, field) in values),
            None,
        )
        if shared is not None:
            return SetEdit(
                name, f"rule `{shared.name}` lists the same addresses without naming the set"
            )
        fields.append(field)
        ids = {r.id for r in users}
        per_add, per_remove = [], []
        for group, interner in zip(groups, interners[field], strict=True):
            preds = _field_preds(group, field)
            mine = frozenset(
                preds[value]
                for rule_id, p in group.rules
                if rule_id in ids and (value := _pred(group, p, field)) is not None
            )
            per_add.append(tuple(interner.ids.get(s | mine, -1) for s in interner.sets))
            per_remove.append(tuple(interner.ids.get(s - mine, -1) for s in interner.sets))
        adds.append(tuple(per_add))
        removes.append(tuple(per_remove))
    if not fields:
        return SetEdit(name, "no rule's address field names it")
    return SetEdit(
        name, "", tuple(fields), tuple(adds), tuple(removes), members, tuple(sorted(others))
    )


def _named(rule: Rule, field: int) -> tuple[str, ...]:
    return rule.source_sets if field == SRC else rule.destination_sets


def _listed(rule: Rule, field: int) -> tuple[AddressRange, ...]:
    return rule.sources if field == SRC else rule.destinations


def _combos(
    groups: Sequence[_Group],
    members: Sequence[Sequence[dict[int, list[int]]]],
    mults: Sequence[tuple[int, ...]],
    bases: Sequence[int],
) -> Combos:
    """Every class tuple some rule covers, by linear index, to the group's first such rule.

    Groups own disjoint index ranges, so taking them in base order and each one's indexes
    sorted gives the arrays in index order; only one group's combos are a dict at a time.
    """
    indexes: array[int] = array("Q")
    rules: array[int] = array("I")
    for gi in sorted(range(len(groups)), key=bases.__getitem__):
        group = groups[gi]
        preds = [_field_preds(group, f) for f in range(len(FIELDS))]
        per_rule = []
        total = 0
        for rule_id, p in group.rules:
            lists = []
            for f in range(len(FIELDS)):
                value = _pred(group, p, f)
                classes = [0] if value is None else members[f][gi].get(preds[f][value], [])
                lists.append([c * mults[gi][f] for c in classes])
            total += functools.reduce(operator.mul, map(len, lists), 1)
            per_rule.append((rule_id, lists))
        if len(indexes) + total > MAX_COMBOS:
            raise TablesTooLarge(
                f"the rules' field combinations need more than {MAX_COMBOS} table entries"
            )
        found: dict[int, int] = {}
        for rule_id, lists in per_rule:
            for combo in itertools.product(*lists):
                found.setdefault(bases[gi] + sum(combo), rule_id)
        for index in sorted(found):
            indexes.append(index)
            rules.append(found[index])
    return Combos(indexes, rules)


def _radix(group: _Group, members: Sequence[dict[int, list[int]]]) -> tuple[tuple[int, ...], int]:
    """Per field the weight of its class in the group's linear index, and the index range."""
    weights = [0] * len(FIELDS)
    span = 1
    for f in reversed(range(len(FIELDS))):
        if group.signature >> f & 1:
            weights[f] = span
            span *= 1 + max((c for cs in members[f].values() for c in cs), default=0)
    return tuple(weights), span


def _bases(radix: Sequence[tuple[tuple[int, ...], int]]) -> tuple[list[int], int]:
    """Index ranges: the smallest groups fill the array while it has room, the rest hash."""
    bases = [0] * len(radix)
    used = 0
    hashed = []
    for gi in sorted(range(len(radix)), key=lambda gi: (radix[gi][1], gi)):
        if used + radix[gi][1] <= ARRAY_SLOTS:
            bases[gi] = used
            used += radix[gi][1]
        else:
            hashed.append(gi)
    top = used
    for gi in hashed:
        bases[gi] = top
        top += radix[gi][1]
    if top > MAX_INDEX:
        raise TablesTooLarge("a group's field classes have more than 2^63 combinations")
    return bases, used


def class_counts(tables: Tables) -> dict[str, int]:
    """Sizes for reports and benchmarks."""
    return {
        "groups": tables.ngroups,
        "src_prefixes": len(tables.src),
        "dst_prefixes": len(tables.dst),
        "sport_classes": len(tables.sport_classes),
        "dport_classes": len(tables.dport_classes),
        "combos": len(tables.combos),
        "array_slots": tables.array_size,
    }
