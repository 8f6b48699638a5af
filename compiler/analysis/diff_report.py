"""A semantic diff for people and programs: text, JSON (the contract of issue 12), markdown, and
findings on the policy lines that cause each change (which the SARIF report carries)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from fwc.compiler.analysis.diff import LOG, VERDICT, Change, Decider
from fwc.compiler.analysis.region import Match, PacketCase
from fwc.compiler.policy.findings import Finding, Location, Severity

FORMATS = ("text", "json", "markdown")


@dataclass(frozen=True)
class PolicyDiff:
    """The changes between two versions of one policy, named as the user named them."""

    old: str
    new: str
    changes: tuple[Change, ...]
    # Where the old file lives in the work tree (with --base, `old` is `REF:path`): the
    # file that findings on a removed rule's old line name.
    old_in_tree: str | None = None
    # The new policy's rules by name: a change whose old rule still exists (edited so that
    # it no longer decides) is caused by that rule's new line.
    new_rules: tuple[tuple[str, Location], ...] = ()

    @property
    def verdicts(self) -> list[Change]:
        return [c for c in self.changes if c.kind == VERDICT]

    @property
    def others(self) -> list[Change]:
        return [c for c in self.changes if c.kind != VERDICT]


def _side(decider: Decider) -> dict[str, Any]:
    rule = decider.rule
    b = decider.behaviour
    rate = (
        {"pps": b.rate_limit_pps, "burst": b.rate_limit_burst}
        if b.rate_limit_pps is not None
        else None
    )
    return {
        "verdict": b.verdict,
        "rule": rule.name if rule is not None else "default",
        "location": str(rule.location) if rule is not None else None,
        "rate_limit": rate,
        "log": b.log,
    }


def _change_json(change: Change) -> dict[str, Any]:
    return {
        "match": change.match,
        "old": _side(change.old),
        "new": _side(change.new),
        "example": change.example,
        "newly_allowed": change.newly_allowed,
    }


def to_json(diffs: list[PolicyDiff]) -> str:
    """One document; `changes` lists verdict changes, `other_changes` log and counter ones."""
    changes: list[dict[str, Any]] = []
    others: list[dict[str, Any]] = []
    for d in diffs:
        head = {"old_file": d.old, "new_file": d.new}
        changes += [{**head, **_change_json(c)} for c in d.verdicts]
        others += [{**head, "kind": c.kind, **_change_json(c)} for c in d.others]
    return json.dumps({"changes": changes, "other_changes": others}, indent=2) + "\n"


def describe(match: Match) -> str:
    """A match in one line: `tcp 10.0.0.0/8 -> any port 22 flags SYN,!ACK`."""
    if match.get("no_rule_matches"):
        return "every packet that no rule of either policy matches"

    def nets(cidrs: list[str]) -> str:
        return "any" if cidrs in (["0.0.0.0/0"], ["::/0"]) else ",".join(cidrs)

    words = [match["protocol"]]
    if match["fragment"] == "non-first":
        words.append("non-first fragment")
    words.append(f"{nets(match['source_cidrs'])} -> {nets(match['destination_cidrs'])}")
    for key, label in (("source_ports", "sport"), ("destination_ports", "dport")):
        if match[key]:
            words.append(f"{label} {','.join(str(p) for p in match[key])}")
    if match["tcp_flags"]:
        words.append(f"flags {match['tcp_flags']}")
    if match["icmp_types"]:
        words.append(f"icmp-type {','.join(str(t) for t in match['icmp_types'])}")
    if match.get("state"):
        words.append(f"state {','.join(match['state'])}")
    if match.get("interface"):
        words.append(f"on interfaces {match['interface']}")
    return " ".join(words)


def _who(side: dict[str, Any]) -> str:
    what = side["verdict"]
    if side["rate_limit"]:
        what += f" {side['rate_limit']['pps']}/s burst {side['rate_limit']['burst']}"
    if side["log"]:
        what += " (log)"
    if side["location"] is None:
        return f"{what} by the default action"
    return f"{what} by rule `{side['rule']}` ({side['location']})"


def _packet(example: PacketCase) -> str:
    return "{" + ", ".join(f"{k}: {json.dumps(v)}" for k, v in example.items()) + "}"


def to_text(diffs: list[PolicyDiff]) -> str:
    lines: list[str] = []
    for d in diffs:
        n, m = len(d.verdicts), len(d.others)
        if not d.changes:
            lines.append(f"{d.old} -> {d.new}: no packet changes its verdict, log or counter")
            continue
        lines.append(f"{d.old} -> {d.new}: {n} region(s) change verdict, {m} other change(s)")
        for change in d.verdicts + d.others:
            body = _change_json(change)
            lines.append(f"  {change.kind}: {describe(change.match)}")
            lines.append(f"    old: {_who(body['old'])}")
            lines.append(f"    new: {_who(body['new'])}")
            lines.append(f"    example: {_packet(change.example)}")
    return "\n".join(lines) + "\n"


def to_markdown(diffs: list[PolicyDiff]) -> str:
    lines = ["## fwc diff", ""]
    for d in diffs:
        lines.append(f"### `{d.old}` → `{d.new}`")
        lines.append("")
        if not d.changes:
            lines += ["No packet changes its verdict, log or counter.", ""]
            continue
        lines.append(
            f"{len(d.verdicts)} region(s) change verdict, {len(d.others)} other change(s)."
        )
        lines += ["", "| change | packets | old | new | example |", "|---|---|---|---|---|"]
        for change in d.verdicts + d.others:
            body = _change_json(change)
            cells = [
                change.kind,
                f"`{describe(change.match)}`",
                _who(body["old"]),
                _who(body["new"]),
                f"`{_packet(change.example)}`",
            ]
            lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
        lines.append("")
    return "\n".join(lines)


def _finding_id(change: Change) -> str:
    if change.kind == VERDICT:
        return "FWC070" if change.newly_allowed else "FWC071"
    return "FWC072" if change.kind == LOG else "FWC073"


def _cause(d: PolicyDiff, change: Change) -> tuple[Location, str | None]:
    """The line that causes a change: the rule that now decides, else the old rule (at its
    new line when it is still there, at its old line when removed), else the new policy
    file (its default action)."""
    if change.new.rule is not None:
        return change.new.rule.location, change.new.rule.name
    if change.old.rule is not None:
        name = change.old.rule.name
        still = dict(d.new_rules).get(name)
        if still is not None:
            return still, name
        where = change.old.rule.location
        if d.old_in_tree is not None:
            where = Location(d.old_in_tree, where.line, where.column)
        return where, change.old.rule.name
    return Location(d.new if d.new != "(none)" else d.old_in_tree or d.old), None


def findings(diffs: list[PolicyDiff]) -> list[Finding]:
    """One finding per change, at the line that causes it: verdict changes are warnings
    (FWC070 newly allowed, FWC071 the rest), log and counter changes notes (FWC072, FWC073)."""
    out: list[Finding] = []
    for d in diffs:
        for change in d.verdicts + d.others:
            body = _change_json(change)
            where, rule = _cause(d, change)
            message = (
                f"{describe(change.match)}: {_who(body['old'])} -> {_who(body['new'])}; "
                f"e.g. {_packet(change.example)}"
            )
            severity = Severity.WARNING if change.kind == VERDICT else Severity.INFO
            out.append(Finding(_finding_id(change), severity, message, where, rule))
    return out


def render(diffs: list[PolicyDiff], fmt: str) -> str:
    if fmt == "json":
        return to_json(diffs)
    if fmt == "markdown":
        return to_markdown(diffs)
    return to_text(diffs)
