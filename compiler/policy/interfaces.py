"""A policy's interface classes: the sets of rule patterns an attached interface can match.

Class 0 is always the empty set: an interface no pattern matches, and an ingress interface
fw-load does not know. The compiled program reads an interface's class from the map
fw-load fills; the analysis gives each class one bit (docs/semantics.md, Interfaces).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from fwc.artifact.ifclass import class_of_patterns
from fwc.compiler.policy.globs import LOOPBACK, Selection, realisable
from fwc.compiler.policy.ir import Policy, Rule

# The classes a compiled program tells apart: a class index is one bit of a u32 in the
# constants strategy, one row block of the L4 table in the tables strategy.
MAX_CLASSES = 32


class TooManyInterfaceClasses(Exception):
    """The rules' interface patterns split interfaces into more classes than programs hold."""


@dataclass(frozen=True)
class InterfaceClasses:
    """`patterns`: every pattern a rule names, sorted; `classes`: the signatures (pattern
    indexes) in class order, () first; `attached`: bit k set when some interface the policy
    attaches to is in class k; `loopback`: bit k set when loopback is the only such interface
    of class k; `examples`: a name of each class (an attached one if any)."""

    patterns: tuple[str, ...]
    classes: tuple[tuple[int, ...], ...]
    attached: int
    examples: tuple[str, ...] = ()
    loopback: int = 0

    @property
    def used(self) -> bool:
        return bool(self.patterns)

    def rule_mask(self, rule: Rule) -> int:
        """Bit k set when the interfaces of class k pass `rule`'s interface match."""
        if not rule.has_interfaces:
            return (1 << len(self.classes)) - 1
        wanted = {self.patterns.index(p) for p in rule.interfaces}
        unwanted = {self.patterns.index(p) for p in rule.not_interfaces}
        mask = 0
        for k, members in enumerate(self.classes):
            if (not wanted or wanted & set(members)) and not unwanted & set(members):
                mask |= 1 << k
        return mask

    def class_of(self, name: str | None) -> int:
        """The class of an interface name; None (unknown) and names of no class are class 0."""
        return 0 if name is None else class_of_patterns(name, self.patterns, self.classes)

    def describe(self, k: int) -> str:
        """Class k in words: the patterns its names match and those they do not."""
        members = self.classes[k]
        inside = [p for i, p in enumerate(self.patterns) if i in members]
        outside = [p for i, p in enumerate(self.patterns) if i not in members]
        if not inside:
            return f"matching none of {', '.join(outside)}"
        text = f"matching {' and '.join(inside)}"
        return f"{text}, not {', '.join(outside)}" if outside else text


NO_INTERFACES = InterfaceClasses((), ((),), 1, ("",))


def rule_patterns(rules: Sequence[Rule]) -> tuple[str, ...]:
    return tuple(sorted({p for r in rules for p in (*r.interfaces, *r.not_interfaces)}))


def program_classes(policy: Policy) -> InterfaceClasses:
    """The classes of a policy's program; TooManyInterfaceClasses when it cannot hold them."""
    found = interface_classes(policy)
    if len(found.classes) > MAX_CLASSES:
        raise TooManyInterfaceClasses(
            f"the rules' interface patterns split interface names into {len(found.classes)} "
            f"classes; a program tells at most {MAX_CLASSES} apart"
        )
    return found


def interface_classes(*policies: Policy) -> InterfaceClasses:
    """The classes over the patterns of every rule of `policies`; a diff passes both."""
    patterns = rule_patterns([r for p in policies for r in p.rules])
    if not patterns:
        return NO_INTERFACES
    attached: dict[tuple[int, ...], str] = {}
    not_loopback: set[tuple[int, ...]] = set()
    for policy in policies:
        include, exclude = policy.interfaces.include, policy.interfaces.exclude
        for members, name in realisable(patterns, Selection(include, exclude)).items():
            attached.setdefault(members, name)
        not_loopback |= set(realisable(patterns, Selection(include, (*exclude, LOOPBACK))))
    every = realisable(patterns, Selection(("*", "lo")))
    classes = ((), *sorted(set(every) - {()}))
    mask = sum(1 << k for k, members in enumerate(classes) if members in attached)
    examples = tuple(attached.get(members, every.get(members, "")) for members in classes)
    loopback = sum(
        1 << k
        for k, members in enumerate(classes)
        if members in attached and members not in not_loopback
    )
    return InterfaceClasses(patterns, classes, mask, examples, loopback)
