"""Connection state in a source rule (`--ctstate`, `--state`, nft `ct state`) as fwc's `state`.

fwc reads the state of a packet from the kernel's conntrack, but only for packets it can
name a connection for from the frame alone: TCP and UDP (not a non-first fragment) and ICMP
errors that quote a TCP or UDP packet. Netfilter also tracks ICMP queries (echo), other
protocols and reassembled fragments; fwc sees those as untracked, and a rule with `state`
never matches them. A converted rule that can meet such packets carries `UNTRACKED_WARNING`.
"""

from __future__ import annotations

from dataclasses import replace

from fwc.compiler.importers.model import Flat, Match
from fwc.compiler.policy.ir import CT_STATES

ALL_STATES = sum(CT_STATES.values())
# states netfilter has that fwc's `state` cannot say, and why
NOT_EXPRESSIBLE: dict[str, str] = {
    "untracked": "the UNTRACKED state (a raw-table NOTRACK) is not expressible",
    "snat": "the SNAT state (the connection's source was rewritten) is not expressible",
    "dnat": "the DNAT state (the connection's destination was rewritten) is not expressible",
}
ORDER = ("new", "established", "related", "invalid")
ICMP_ERRORS = {1: frozenset({3, 4, 5, 11, 12}), 58: frozenset({1, 2, 3, 4})}
UNTRACKED_WARNING = (
    "a state rule that can match {what}: netfilter tracks them, fwc sees them as untracked "
    "and its `state` never matches them"
)


class StateError(Exception):
    """A state fwc cannot express (the message is the reason)."""


def state_bits(names: list[str], negated: bool) -> int:
    """The CT_STATES bits of `names` (case-insensitive), or of every other state when
    `negated`; StateError for UNTRACKED, SNAT, DNAT or an unknown name."""
    bits = 0
    for raw in names:
        name = raw.strip().lower()
        if name in NOT_EXPRESSIBLE:
            raise StateError(NOT_EXPRESSIBLE[name])
        if name not in CT_STATES:
            raise StateError(f"connection state {raw!r} is not one fwc knows")
        bits |= CT_STATES[name]
    return ALL_STATES & ~bits if negated else bits


def state_names(bits: int) -> list[str]:
    return [n for n in ORDER if bits & CT_STATES[n]]


def untracked_kinds(match: Match) -> str:
    """What packets netfilter tracks and fwc does not that `match` can meet ("" if none)."""
    if match.state is None:
        return ""
    if match.protocol is None:
        return "ICMP queries (echo) and protocols other than TCP and UDP"
    errors = ICMP_ERRORS.get(match.protocol)
    if errors is None:
        return ""
    if match.icmp is None or any(t not in errors for t in match.icmp):
        return "ICMP queries (echo)"
    return ""


def with_state_warning(flat: Flat) -> Flat:
    what = untracked_kinds(flat.match)
    if not what:
        return flat
    return replace(flat, warnings=(*flat.warnings, UNTRACKED_WARNING.format(what=what)))
