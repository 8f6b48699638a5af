"""The behaviour findings of `fwc check`: FWC030 shadowed and FWC035 redundant rules."""

from __future__ import annotations

import json
import re

from fwc.compiler.analysis.decide import Behaviour, Decided, behaviour, decide
from fwc.compiler.analysis.redundancy import Redundant
from fwc.compiler.analysis.region import PacketCase, example, writable
from fwc.compiler.analysis.review import Review
from fwc.compiler.analysis.shadow import Shadowed
from fwc.compiler.analysis.space import Region
from fwc.compiler.policy.findings import Finding, Location, Related, Severity
from fwc.compiler.policy.interfaces import NO_INTERFACES, InterfaceClasses
from fwc.compiler.policy.ir import Policy, Rule

# A string YAML reads back as the same string without quotes, in a flow mapping.
_PLAIN = re.compile(r"[A-Za-z][A-Za-z0-9._-]*|[0-9]+\.[0-9]+\.[0-9]+\.[0-9]+")


_WORDS = frozenset({"y", "n", "yes", "no", "true", "false", "on", "off", "null"})


def _scalar(value: object) -> str:
    if isinstance(value, str) and (not _PLAIN.fullmatch(value) or value.lower() in _WORDS):
        return json.dumps(value)  # a JSON string is a YAML double-quoted scalar
    return str(value)


def packet_text(packet: PacketCase) -> str:
    """`{proto: tcp, src: 10.0.0.1, ...}`: what a `fwc test` case's `packet:` would say."""
    return "{" + ", ".join(f"{key}: {_scalar(value)}" for key, value in packet.items()) + "}"


def _place(location: Location) -> str:
    return f"{location.file}:{location.line}"


def _named(rule: Rule) -> str:
    return f"`{rule.name}` ({_place(rule.location)})"


def _does(b: Behaviour) -> str:
    """What a behaviour does to a packet, in the words of a policy."""
    words = b.verdict
    if b.rate_limit_pps is not None:
        words += f" at {b.rate_limit_pps}/s (burst {b.rate_limit_burst})"
    return words + (" with log" if b.log else "")


def _rules(rules: tuple[Rule, ...]) -> str:
    head = "rule" if len(rules) == 1 else "rules"
    return f"{head} " + ", ".join(_named(rule) for rule in rules)


def _unattached(done: Review, rule: Rule) -> bool:
    """No interface the policy attaches to matches any of the rule's `interfaces`: FWC039
    names each pattern, and FWC030 would say it again."""
    classes = done.index.interfaces
    wanted = {classes.patterns.index(p) for p in rule.interfaces}
    return bool(wanted) and not any(
        classes.attached >> k & 1 and wanted & set(members)
        for k, members in enumerate(classes.classes)
    )


def _position(done: Review, rule: Rule) -> int:
    return next(i for i, r in enumerate(done.index.rules) if r is rule)


def _broken(done: Review, found: Shadowed) -> list[Decided]:
    """The parts of the rule's match that earlier rules decide otherwise than it would:
    read from the rules that really decide them, which need not all be in the cover."""
    position = next(i for i, rule in enumerate(done.index.rules) if rule is found.rule)
    mine = behaviour(done.policy, found.rule)
    return [
        part
        for part in decide(done.index, done.index.cubes[position])
        if behaviour(done.policy, part.rule) != mine
    ]


def _shadowed(done: Review, found: Shadowed) -> Finding:
    rule = found.rule
    policy = done.policy
    mine = behaviour(policy, rule)
    if not found.cover and rule.has_interfaces and not done.index.cubes[_position(done, rule)]:
        message = (
            f"rule `{rule.name}` matches no packet at all: no interface the policy attaches "
            "to passes its `interfaces`"
        )
        return Finding("FWC030", Severity.WARNING, message, rule.location, rule.name)
    if not found.cover:
        message = (
            f"rule `{rule.name}` matches no packet at all: its fields cannot all hold at once "
            "(address families, protocol and ports, or connection states that exclude each other)"
        )
        return Finding("FWC030", Severity.WARNING, message, rule.location, rule.name)
    several = len(found.cover) > 1
    message = (
        f"rule `{rule.name}` is never reached: earlier {_rules(found.cover)} "
        f"{'together match' if several else 'matches'} every packet it matches"
    )
    broken = _broken(done, found)
    example, decider = found.example, found.example_rule
    severity = Severity.WARNING
    if broken:
        severity = Severity.ERROR
        groups: dict[str, list[str]] = {}
        for part in broken:
            name = f"`{part.rule.name}`" if part.rule is not None else "the default action"
            does = groups.setdefault(_does(behaviour(policy, part.rule)), [])
            if name not in does:
                does.append(name)
        others = "; ".join(f"{', '.join(names)}: {does}" for does, names in groups.items())
        message += f", and some are decided differently ({others}; this rule: {_does(mine)})"
        # The example shows the broken intent: a packet decided otherwise.
        example = region_example(broken[0].region, done.index.interfaces)
        decider = broken[0].rule
    else:
        message += f", and all are decided the same ({_does(mine)}); remove it or move it up"
    if example is not None and decider is not None:
        message += f"; example packet {packet_text(example)} is decided by `{decider.name}`"
    return Finding(
        "FWC030",
        severity,
        message,
        rule.location,
        rule.name,
        example=example,
        related=tuple(Related(r.name, r.location) for r in found.cover),
    )


def region_example(region: Region, classes: InterfaceClasses = NO_INTERFACES) -> PacketCase:
    """One packet of a non-empty region, as a `fwc test` case's packet."""
    return example(writable(region[0])[0], classes)


def _redundant(policy: Policy, found: Redundant) -> Finding:
    rule = found.rule
    deciders = [_named(r) for r in found.successors]
    if found.default:
        deciders.append(f"the default action ({policy.default_action.value})")
    message = (
        f"rule `{rule.name}` is redundant: without it, its packets go to "
        f"{', '.join(deciders)} and get the same verdict there "
        f"({_does(behaviour(policy, rule))}); "
        f"no packet's verdict would change; example packet {packet_text(found.example)}"
    )
    return Finding(
        "FWC035",
        Severity.WARNING,
        message,
        rule.location,
        rule.name,
        example=found.example,
        related=tuple(Related(r.name, r.location) for r in found.successors),
    )


def behaviour_findings(done: Review) -> list[Finding]:
    """FWC030 for every shadowed rule, FWC035 for every redundant one, but for a rule whose
    packets would go to a shadowed rule: that pair (a duplicate, say) is one mistake, and
    the FWC030 of the later rule already names it."""
    out = [_shadowed(done, s) for s in done.shadowed if not _unattached(done, s.rule)]
    dead = {id(s.rule) for s in done.shadowed}
    out += [
        _redundant(done.policy, r)
        for r in done.redundant
        if not any(id(later) in dead for later in r.successors)
    ]
    return out
