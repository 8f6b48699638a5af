"""Rendering: the comment filter, and that no policy text can break out of a C comment."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest

from fwc.compiler.backend.plan import make_plan
from fwc.compiler.backend.render import comment, render
from fwc.compiler.policy.findings import Location
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


def test_hostile_file_names_stay_inside_comments() -> None:
    policy = one_rule("{name: r, priority: 1, source_cidrs: ['10.0.0.0/8']}")
    place = Location("x/" + HOSTILE + "\\\n" + HOSTILE + ".yaml", 4)
    rule = dataclasses.replace(policy.rules[0], location=place)
    source = render(make_plan(dataclasses.replace(policy, rules=(rule,)), "constants", False))
    assert "evil();" not in source
    assert comments_are_closed(source)


def test_rule_blocks_show_place_and_cidrs() -> None:
    policy = one_rule(
        "{name: r, priority: 1, action: allow, source_cidrs: ['10.0.0.0/8', 'fd00::/8'],"
        " destination_cidrs: ['192.0.2.0/24']}"
    )
    source = render(make_plan(policy, "constants", False))
    assert "/* from 10.0.0.0/8, fd00::/8 to 192.0.2.0/24 */" in source
    where = f"{Path(policy.rules[0].location.file).name}:{policy.rules[0].location.line}"
    assert f"allow ({where}) */" in source


def test_generated_c_carries_the_spdx_line_and_the_program_name() -> None:
    policy = policy_of("name: edge-web\nrules:\n  - {name: r, priority: 1}\n")
    for strategy in ("constants", "tables"):
        source = render(make_plan(policy, strategy, False))
        assert source.startswith("// SPDX-License-Identifier: GPL-2.0\n")
        assert "int fwc_edge_web(struct xdp_md *ctx)" in source


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
