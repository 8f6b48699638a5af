"""Chains with jumps, gotos and RETURN turned into one first-match list, exactly.

A jumped-to chain's rules are emitted in place, each narrowed to the jump's packets;
what the chain leaves undecided falls through to the caller's next rules, as in
netfilter. A RETURN (or goto) that later rules of its chain could see needs an AND-NOT
one rule cannot say; its packets are decided on the spot instead (the caller's remaining
rules narrowed to them come first), so that the chain's later rules only meet the
packets that did not return. An ACCEPT in one of several base chains hands its packets
on to the next base chain the same way.
"""

from __future__ import annotations

from dataclasses import replace

from fwc.compiler.importers.model import (
    Chain,
    Entry,
    Flat,
    Gap,
    Inexpressible,
    Match,
    Origin,
    Ruleset,
    SourceError,
    Verdict,
    intersect,
)

MAX_RULES = 65536  # priorities are 0..65535
MAX_DEPTH = 64

Frame = tuple[str, int]  # (chain, index of the next entry)


class _Walk:
    def __init__(self, ruleset: Ruleset) -> None:
        self.rs = ruleset
        self.out: list[Flat] = []
        self.gaps: dict[Origin, Gap] = {}

    def emit(self, flat: Flat) -> None:
        if len(self.out) >= MAX_RULES:
            raise SourceError(
                f"{self.rs.source}: flattening the jumps needs more than {MAX_RULES} rules"
            )
        self.out.append(flat)

    def accept(self, match: Match, who: Flat, base: int, via: tuple[Origin, ...]) -> None:
        """An ACCEPT (`who`) ends its base chain only: the next base chain, if any, decides;
        a packet all of them accept is allowed in the name of the last one that did."""
        if base + 1 < len(self.rs.bases):
            if who.log:
                reason = (
                    "a logged ACCEPT before another input chain: fwc logs only the final verdict"
                )
                self.gaps.setdefault(who.origin, Gap(who.origin, who.text, reason, False))
            self.enter(base + 1, match, via, who)
        else:
            self.emit(replace(who, match=match))

    def enter(
        self, base: int, ctx: Match, via: tuple[Origin, ...], who: Flat | None = None
    ) -> None:
        """Packets of `ctx` meet base chain `base`; those of another family pass it by."""
        chain = self.rs.chains[self.rs.bases[base]]
        if chain.family is None or ctx.family == chain.family:
            self.run(((chain.name, 0),), ctx, base, via)
            return
        mine = intersect(ctx, Match(family=chain.family))
        if mine is not None:
            self.run(((chain.name, 0),), mine, base, via)
        other = intersect(ctx, Match(family=10 - chain.family))
        if other is not None:
            text = f"IPv{10 - chain.family} packets pass chain {chain.name} by"
            self.accept(other, who or Flat(other, True, chain.origin, text, via=via), base, via)

    def _policy(self, match: Match, allow: bool, base: int, via: tuple[Origin, ...]) -> Flat:
        chain = self.rs.chains[self.rs.bases[base]]
        policy = "ACCEPT" if allow else "DROP"
        return Flat(
            match,
            allow,
            chain.origin,
            f"chain {chain.name} policy {policy}",
            via=via,
            catch_all=True,
        )

    def run(self, stack: tuple[Frame, ...], ctx: Match, base: int, via: tuple[Origin, ...]) -> None:
        """Decide every packet of `ctx`, evaluating from the top frame of `stack` on.

        What one chain leaves undecided goes on in the frame below it: the packets it did
        decide are caught by the rules already emitted, which come first.
        """
        while stack:
            name, start = stack[-1]
            stack = stack[:-1]
            if self.chain(name, start, ctx, base, via, stack):
                return
        # a chain reached by a goto from the base chain returned: the base policy decides
        self.end_of_base(ctx, base, via)

    def chain(
        self,
        name: str,
        start: int,
        ctx: Match,
        base: int,
        via: tuple[Origin, ...],
        outer: tuple[Frame, ...],
    ) -> bool:
        """Emit what chain `name` decides for `ctx` from entry `start` on, in place; True when
        every packet of `ctx` is decided. `outer` is where a RETURN goes on."""
        if len(outer) > MAX_DEPTH:
            raise SourceError(f"{self.rs.source}: jumps nest deeper than {MAX_DEPTH} (a loop?)")
        chain = self.rs.chains[name]
        for j in range(start, len(chain.entries)):
            entry = chain.entries[j]
            if entry.gap is not None or entry.verdict is Verdict.CONTINUE:
                continue
            assert entry.match is not None
            try:
                match = intersect(ctx, entry.match)
            except Inexpressible as exc:
                self.gaps.setdefault(entry.origin, Gap(entry.origin, entry.text, str(exc)))
                continue
            if match is None:
                continue
            decided = self._decide(entry, match, (*outer, (name, j + 1)), base, via)
            if decided and match == ctx:
                return True
            if not decided and match == ctx and entry.verdict is Verdict.RETURN:
                return False  # all of ctx goes back to the caller
        if chain.policy is not None:
            self.end_of_base(ctx, base, via)
            return True
        return False

    def end_of_base(self, ctx: Match, base: int, via: tuple[Origin, ...]) -> None:
        """The base chain's policy decides (at its end, or on a RETURN in it)."""
        if self.rs.chains[self.rs.bases[base]].policy is Verdict.ACCEPT:
            self.accept(ctx, self._policy(ctx, True, base, via), base, via)
        else:
            self.emit(self._policy(ctx, False, base, via))

    def _later(self, frame: Frame, match: Match) -> bool:
        """Whether a rule from `frame` to the end of its chain can see a packet of `match`."""
        name, start = frame
        for entry in self.rs.chains[name].entries[start:]:
            if entry.gap is None and entry.verdict is not Verdict.CONTINUE:
                assert entry.match is not None
                try:
                    if intersect(match, entry.match) is not None:
                        return True
                except Inexpressible:
                    return True  # it meets some of them
        return False

    def _decide(
        self,
        entry: Entry,
        match: Match,
        after: tuple[Frame, ...],
        base: int,
        via: tuple[Origin, ...],
    ) -> bool:
        """Emit what happens to the packets of `match` that reached `entry`; `after` goes on
        past it. True when all of them are decided; False when some come back to the rules
        after `entry` (a jump whose chain returns) or to the caller (a RETURN).

        A RETURN, or a goto, that later rules of its chain could see is resolved by
        deciding its packets on the spot, the caller's remaining rules narrowed to them;
        otherwise its packets simply fall through, which costs no copies."""
        via_here = (*via, entry.origin)
        if entry.verdict is Verdict.ACCEPT:
            self.accept(match, _flat(entry, match, True, via), base, via)
        elif entry.verdict in (Verdict.DROP, Verdict.REJECT):
            self.emit(_flat(entry, match, False, via))
        elif entry.verdict is Verdict.RETURN and len(after) == 1:
            self.end_of_base(match, base, via_here)
        elif entry.verdict is Verdict.RETURN:
            if not self._later(after[-1], match):
                return False
            self.run(after[:-1], match, base, via_here)
        elif entry.verdict is Verdict.JUMP:
            self._check_target(entry)
            return self.chain(entry.target, 0, match, base, via_here, after)
        else:
            self._check_target(entry)
            if not self._later(after[-1], match):
                return self.chain(entry.target, 0, match, base, via_here, after[:-1])
            self.run((*after[:-1], (entry.target, 0)), match, base, via_here)
        return True

    def _check_target(self, entry: Entry) -> None:
        if entry.target not in self.rs.chains:
            raise SourceError(f"{entry.origin}: no chain named {entry.target!r}")


def _flat(entry: Entry, match: Match, allow: bool, via: tuple[Origin, ...]) -> Flat:
    return Flat(
        match,
        allow,
        entry.origin,
        entry.text,
        entry.log,
        entry.description,
        via,
        entry.warnings,
    )


def merge_logs(chain: Chain) -> None:
    """A LOG rule becomes `log: true` on the next rule when that rule decides exactly the
    packets it logged; otherwise it is a finding (the verdicts do not change)."""
    entries = chain.entries
    for k, entry in enumerate(entries):
        if not (entry.log and entry.verdict is Verdict.CONTINUE and entry.gap is None):
            continue
        nxt = entries[k + 1] if k + 1 < len(entries) else None
        deciding = (Verdict.ACCEPT, Verdict.DROP, Verdict.REJECT)
        if (
            nxt is not None
            and nxt.gap is None
            and nxt.verdict in deciding
            and nxt.match == entry.match
        ):
            entries[k + 1] = Entry(
                nxt.origin, nxt.text, nxt.match, nxt.verdict, nxt.target, True,
                nxt.description or entry.description, warnings=nxt.warnings,
            )  # fmt: skip
            entries[k] = Entry(entry.origin, entry.text, Match(), Verdict.CONTINUE)
        else:
            reason = "LOG is exact only before a rule that decides the same packets"
            entries[k] = Entry(
                entry.origin,
                entry.text,
                None,
                Verdict.CONTINUE,
                gap=Gap(entry.origin, entry.text, reason, False),
            )


def flatten(ruleset: Ruleset) -> tuple[list[Flat], list[Gap]]:
    """The first-match list equal to the ruleset (but for its gaps), and those gaps."""
    for chain in ruleset.chains.values():
        merge_logs(chain)
    walk = _Walk(ruleset)
    if ruleset.bases:
        walk.enter(0, ruleset.context, ())
    return walk.out, list(ruleset.gaps) + _reachable_gaps(ruleset) + list(walk.gaps.values())


def _reachable_gaps(ruleset: Ruleset) -> list[Gap]:
    """The gaps of every chain a jump can reach, whatever the matches: a rule left out can
    change which later rules a packet meets, so those must not hide behind it."""
    seen: set[str] = set()
    todo = list(ruleset.bases)
    gaps: list[Gap] = []
    while todo:
        name = todo.pop()
        if name in seen or name not in ruleset.chains:
            continue
        seen.add(name)
        for entry in ruleset.chains[name].entries:
            if entry.gap is not None:
                gaps.append(entry.gap)
            if entry.target and entry.verdict in (Verdict.JUMP, Verdict.GOTO):
                todo.append(entry.target)
    unique = {g.origin: g for g in gaps}
    return sorted(unique.values(), key=lambda g: (g.origin.file, g.origin.line))
