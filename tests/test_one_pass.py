"""All findings in one pass: a schema error in one place hides no finding elsewhere (issue 12)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fwc.compiler.check import ANALYSES, CheckOptions, check_file
from tests.strategies import policy_documents

# The issue's example: a bad `action` in one rule, a duplicate name, an invalid CIDR and
# an undefined set elsewhere.
FOUR_FAULTS = """\
name: four-faults
rules:
  - name: allow_web
    priority: 10
    action: alow
    protocol: tcp
    destination_ports: [443]
  - name: allow_ssh
    priority: 20
    action: allow
    protocol: tcp
    destination_ports: [22]
  - name: allow_ssh
    priority: 30
    action: allow
    source_cidrs: ["10.0.0.300/8"]
  - name: allow_mgmt
    priority: 40
    action: allow
    source_cidrs: ["$mgmt"]
"""

RULE = "  - name: {name}\n    priority: {priority}\n    action: allow\n"


def _found(tmp_path: Path, text: str) -> list[tuple[str, int]]:
    path = tmp_path / "p.yaml"
    path.write_text(text)
    result = check_file(path, CheckOptions(analyses=ANALYSES))
    assert result.policy is None
    return [(f.id, f.location.line) for f in result.findings]


def test_the_issue_example_gives_four_findings(tmp_path: Path) -> None:
    assert _found(tmp_path, FOUR_FAULTS) == [
        ("FWC014", 5),
        ("FWC020", 13),
        ("FWC029", 16),
        ("FWC021", 20),
    ]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # A broken top-level value: the rules are still checked.
        (
            "name: p\ndefault_action: maybe\nrules:\n"
            + RULE.format(name="a", priority=1)
            + "    source_cidrs: ['10.0.0.1/33']\n",
            [("FWC014", 2), ("FWC029", 7)],
        ),
        # A badly formed policy name stands for itself: no "missing name" on top of it.
        (
            "name: Bad Name\nrules:\n"
            + RULE.format(name="a", priority=1)
            + RULE.format(name="a", priority=2),
            [("FWC033", 1), ("FWC020", 6)],
        ),
        # A broken set entry: the set is unreadable, not undefined, and a rule naming it
        # only that set is not told it names only empty sets.
        (
            "name: p\nsets:\n  nets: [true]\nrules:\n"
            + RULE.format(name="a", priority=1)
            + "    source_cidrs: ['$nets']\n"
            + RULE.format(name="b", priority=2)
            + "    source_cidrs: ['$nope']\n",
            [("FWC011", 3), ("FWC021", 12)],
        ),
        # A badly named set: the other sets still expand; a rule using the bad one is
        # not told it is undefined.
        (
            "name: p\nsets:\n  9bad: [10.0.0.0/8]\n  good: [22]\nrules:\n"
            + RULE.format(name="a", priority=1)
            + "    source_cidrs: ['$9bad']\n    destination_ports: ['$good']\n    protocol: icmp\n",
            [("FWC013", 3), ("FWC023", 10)],
        ),
        # A rule that lost a key to the schema skips the checks across keys (its protocol
        # would read as `any` and tcp_flags be blamed), but its values are still read.
        (
            "name: p\nrules:\n"
            + RULE.format(name="a", priority=1)
            + "    protocol: tcpp\n    tcp_flags: SYN\n    source_cidrs: ['300.0.0.0/8']\n",
            [("FWC014", 6), ("FWC029", 8)],
        ),
        # A badly formed rule name still names the rule for duplicate detection.
        (
            "name: p\nrules:\n"
            + RULE.format(name="bad-name", priority=1)
            + RULE.format(name="bad-name", priority=2),
            [("FWC013", 3), ("FWC013", 6), ("FWC020", 6)],
        ),
        # A rule that is not a mapping at all, and one missing its priority.
        (
            "name: p\nrules:\n  - just text\n"
            "  - name: a\n    action: allow\n    source_cidrs: ['x']\n",
            [("FWC011", 3), ("FWC012", 4), ("FWC029", 6)],
        ),
    ],
)
def test_every_readable_part_is_checked(
    tmp_path: Path, text: str, expected: list[tuple[str, int]]
) -> None:
    assert _found(tmp_path, text) == expected


_JUNK = st.sampled_from([None, True, -1, 70000, "alow", "tcpp", [], {}, ["x"], [True], {"a": 1}])
_KEYS = st.sampled_from(
    ["priority", "action", "protocol", "source_cidrs", "destination_ports", "tcp_flags",
     "icmp_types", "rate_limit_pps", "log", "description", "name", "bogus_key"]
)  # fmt: skip


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(policy_documents(2, 8), st.data())
def test_a_schema_error_in_one_rule_hides_no_fault_of_another(
    tmp_path_factory: pytest.TempPathFactory, doc: dict[str, Any], data: st.DataObject
) -> None:
    """One rule gets an undefined set; another rule gets junk in one key: the undefined set
    is still reported, and nothing escapes as an exception."""
    rules = doc["rules"]
    faulty, broken = data.draw(st.permutations(range(len(rules))))[:2]
    rules[faulty]["source_cidrs"] = ["$undefined_here"]
    rules[broken][data.draw(_KEYS)] = data.draw(_JUNK)
    path = tmp_path_factory.mktemp("one-pass") / "p.yaml"
    path.write_text(yaml.safe_dump(doc))
    result = check_file(path, CheckOptions(analyses=ANALYSES))
    assert any(f.id == "FWC021" and "$undefined_here" in f.message for f in result.findings)
