"""Rendering: the comment filter, and that no policy text can break out of a C comment."""

from __future__ import annotations

import dataclasses
import re

import pytest

from fwc.compiler.backend.plan import make_plan
from fwc.compiler.backend.render import comment, render
from tests.compile_helpers import one_rule, policy_of

HOSTILE = "*/ evil(); /*"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("allow_web", "allow_web"),
        ("*/ evil(); /*", "__ evil()_ __"),
        ("a\nb\\c", "a_b_c"),
        ("ÄÖ", "__"),
        ("x" * 200, "x" * 80),
    ],
)
def test_comment_filter(text: str, expected: str) -> None:
    assert comment(text) == expected


def comments_are_closed(source: str) -> bool:
    """Every comment opens and closes on one line, and no code hides inside one."""
    return all(line.count("/*") == line.count("*/") for line in source.splitlines())


def test_hostile_names_and_descriptions_stay_inside_comments() -> None:
    policy = one_rule('{name: r, priority: 1, action: allow, description: "' + HOSTILE + '"}')
    rule = dataclasses.replace(policy.rules[0], name=HOSTILE, description=HOSTILE)
    policy = dataclasses.replace(policy, name=HOSTILE, rules=(rule,))
    source = render(make_plan(policy, "constants", False))
    assert "evil();" not in source
    assert comments_are_closed(source)


def test_descriptions_are_not_emitted() -> None:
    policy = one_rule('{name: r, priority: 1, description: "a very particular sentence"}')
    assert "particular" not in render(make_plan(policy, "constants", False))


def test_rule_blocks_carry_name_and_priority_in_order() -> None:
    policy = policy_of(
        "name: t\nrules:\n  - {name: late, priority: 9}\n  - {name: early, priority: 3}\n"
    )
    source = render(make_plan(policy, "constants", False))
    marks = re.findall(r"/\* rule (\d+): (\w+), priority (\d+), (\w+) \([^)]*:\d+\) \*/", source)
    assert marks == [("0", "early", "3", "deny"), ("1", "late", "9", "deny")]


def test_dry_run_is_a_compile_time_switch() -> None:
    policy = one_rule("{name: r, priority: 1}")
    assert "#define FWC_DRY_RUN 0" in render(make_plan(policy, "constants", False))
    assert "#define FWC_DRY_RUN 1" in render(make_plan(policy, "constants", True))
