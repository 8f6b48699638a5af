"""The JSON Schema: valid policies pass, each mistake becomes one plain finding in place."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fwc.compiler.policy import schema
from fwc.compiler.policy.source import Document, load_bytes

ROOT = Path(__file__).resolve().parent.parent

BASE = """\
name: base
rules:
  - name: allow_web
    priority: 10
    action: allow
    protocol: tcp
    destination_ports: [443]
"""


def findings_for(text: str) -> list[tuple[str, int, str]]:
    doc, loaded = load_bytes(text.encode(), "p.yaml")
    assert loaded == [] and doc is not None
    return [(f.id, f.location.line, f.message) for f in schema.validate(doc)]


def test_schema_is_valid_draft_2020_12() -> None:
    jsonschema.Draft202012Validator.check_schema(schema.schema())
    assert schema.schema()["$schema"].endswith("/2020-12/schema")


EXAMPLES = [p for p in sorted((ROOT / "policies").glob("*.yaml")) if ".cases." not in p.name]


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_example_policies_are_valid(path: Path) -> None:
    doc, loaded = load_bytes(path.read_bytes(), str(path))
    assert loaded == [] and doc is not None
    assert schema.validate(doc) == []


@pytest.mark.parametrize(
    ("extra", "fid", "line", "words"),
    [
        ("generated_at: 2024-05-01T12:00:00Z\n", None, 0, ""),
        ("generated_at: whenever\n", None, 0, ""),
        ("version: 1\n", None, 0, ""),
        ("version: 2\n", "FWC014", 8, "must be one of 1"),
        ("colour: blue\n", "FWC010", 8, "unknown key `colour`"),
        ("default_action: reject\n", "FWC014", 8, "must be one of allow, deny"),
        ("interfaces: {include: eth0}\n", "FWC011", 8, "must be a list, not a string"),
        ("interfaces: {inclde: [eth0]}\n", "FWC010", 8, "did you mean `include`"),
        ("sets: {web: 443}\n", "FWC011", 8, "must be a list, not an integer"),
        ("sets: {web: [1.5]}\n", "FWC011", 8, "not a number with a fraction"),
        ("sets: {web-ports: [80]}\n", "FWC013", 8, "set name `web-ports`"),
        ("name: x\n", None, 0, ""),
    ],
)
def test_top_level(extra: str, fid: str | None, line: int, words: str) -> None:
    text = BASE.replace("name: base\n", "") if extra.startswith("name:") else BASE
    found = findings_for(text + extra)
    if fid is None:
        assert found == []
    else:
        assert len(found) == 1
        assert found[0][:2] == (fid, line)
        assert words in found[0][2]


@pytest.mark.parametrize(
    ("line", "fid", "words"),
    [
        ("    priority: ten\n", "FWC011", "must be an integer, not a string"),
        ("    priority: 10.0\n", "FWC011", "not a number with a fraction"),
        ("    priority: true\n", "FWC011", "not a boolean"),
        ("    priority: 70000\n", "FWC013", "above the maximum 65535"),
        ("    log: 1\n", "FWC011", "must be true or false"),
        ("    action: drop\n", "FWC014", "allow, deny, rate_limit"),
        ("    protocol: TCP\n", "FWC014", "did you mean `tcp`"),
        ("    source_cidrs: 10.0.0.0/8\n", "FWC011", "must be a list"),
        ("    source_cidrs: [10]\n", "FWC011", "must be a string, not an integer"),
        ("    destination_ports: [-1]\n", "FWC013", "below the minimum 0"),
        ("    destination_ports: [true]\n", "FWC011", "not a boolean"),
        ("    destination_ports: ['']\n", "FWC013", "must not be empty"),
        ("    icmp_types: [256]\n", "FWC013", "above the maximum 255"),
        ("    rate_limit_pps: 0\n", "FWC013", "below the minimum 1"),
        ("    description: {a: b}\n", "FWC011", "must be a string, not a mapping"),
        ("    prio: 3\n", "FWC010", "did you mean `priority`"),
        ("    when: 2024-01-01\n", "FWC010", "unknown key `when`"),
    ],
)
def test_rule_fields(line: str, fid: str, words: str) -> None:
    key = line.split(":")[0]
    lines = [x for x in BASE.splitlines(keepends=True) if x.split(":")[0] != key]
    found = findings_for("".join(lines) + line)
    assert len(found) == 1, found
    assert found[0][0] == fid and found[0][1] == len(lines) + 1
    assert words in found[0][2]
    assert "rule `allow_web`" in found[0][2]


def test_bad_rule_name_is_named_by_position() -> None:
    found = findings_for(BASE.replace("name: allow_web", "name: 9lives"))
    assert found == [
        (
            "FWC013",
            3,
            "`name` of rule `9lives`: '9lives' is badly formed (expected letters, digits and _,"
            " starting with a letter or _, up to 63 long)",
        )
    ]


@pytest.mark.parametrize(
    ("text", "fid"),
    [
        ("- a\n", "FWC011"),
        ("just a string\n", "FWC011"),
        ("~\n", "FWC011"),
        ("name: x\n", "FWC012"),
        ("rules: {a: 1}\n", "FWC011"),
        ("rules: [1]\n", "FWC011"),
    ],
)
def test_document_shape(text: str, fid: str) -> None:
    assert [f[0] for f in findings_for(text)] == [fid]


def test_all_errors_are_reported_not_just_the_first() -> None:
    text = BASE + "  - name: second\n    priority: x\n    action: nope\n    bogus: 1\n"
    assert sorted(f[0] for f in findings_for(text)) == ["FWC010", "FWC011", "FWC014"]


# Every value jsonschema rejects gets at least one finding, or a bad policy passes.
_leaf = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-5, 70000),
    st.floats(allow_nan=False, width=32),
    st.sampled_from(["allow", "deny", "rate_limit", "tcp", "icmp", "x", "", "10.0.0.0/8", "a b"]),
)
_value = st.recursive(
    _leaf,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3),
        st.dictionaries(st.sampled_from(["name", "priority", "x", "rules"]), inner, max_size=3),
    ),
    max_leaves=8,
)
_RULE_KEYS = sorted(schema.schema()["$defs"]["rule"]["properties"])
_TOP_KEYS = sorted(schema.schema()["properties"])


def _mutate(base: dict[str, Any], data: st.DataObject) -> dict[str, Any]:
    value = copy.deepcopy(base)
    rule = value["rules"][0]
    for _ in range(data.draw(st.integers(1, 3))):
        where = data.draw(st.sampled_from(["rule", "top"]))
        target, keys = (rule, _RULE_KEYS) if where == "rule" else (value, _TOP_KEYS)
        op = data.draw(st.sampled_from(["set", "drop", "odd"]))
        key = data.draw(st.sampled_from([*keys, "bogus"]))
        if op == "drop":
            target.pop(key, None)
        elif op == "odd":
            target[key] = data.draw(_value)
        else:
            target[key] = data.draw(_leaf)
    return value


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_a_finding_for_every_value_jsonschema_rejects(data: st.DataObject) -> None:
    base = json.loads(json.dumps({"name": "b", "rules": [{"name": "r", "priority": 1}]}))
    value = _mutate(base, data)
    findings = schema.validate(Document("p.yaml", value, ""))
    assert (findings == []) == schema.validator().is_valid(value)


def test_fwc_schema_prints_the_schema(capsys: pytest.CaptureFixture[str]) -> None:
    from fwc.compiler.cli import main

    assert main(["schema"]) == 0
    assert json.loads(capsys.readouterr().out) == schema.schema()
