"""The shared artifact contract: the typed manifest's codec, its schema, and the layouts."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import loader_fixtures
import pytest

from fwc.artifact import codec, layout
from fwc.artifact.manifest import CounterSlot, LoaderRecord, RuleEntry
from fwc.compiler.backend.manifest import build_manifest
from fwc.compiler.backend.plan import make_plan
from fwc.compiler.backend.tables import plan as tables_plan
from tests.compile_helpers import policy_file
from tests.test_build import EDGE


def _fixture() -> dict[str, Any]:
    document: dict[str, Any] = json.loads(json.dumps(loader_fixtures.BASE_MANIFEST))
    return document


@pytest.mark.parametrize("strategy", ["constants", "tables"])
def test_a_compiled_manifest_round_trips_byte_for_byte(strategy: str) -> None:
    manifest = build_manifest(make_plan(policy_file(str(EDGE)), strategy, False), "22", 10)
    raw = codec.encode(manifest)
    assert codec.decode(raw) == manifest
    assert codec.encode(codec.decode(raw)) == raw
    assert json.loads(raw) == codec.to_json(manifest)


def test_the_pinned_record_round_trips_and_leaves_out_what_is_unknown() -> None:
    manifest = codec.from_json(_fixture())
    pinned = dataclasses.replace(manifest, fw_load=LoaderRecord(generation=1))
    raw = codec.encode(pinned)
    assert json.loads(raw)["fw_load"] == {"generation": 1}
    assert codec.decode(raw) == pinned


def test_rows_come_back_in_order() -> None:
    document = _fixture()
    document["rules"] = {"id": [1, 0], "name": ["b", "a"], "priority": [2, 1], "action": ["x", "y"]}
    document["counters"]["slots"] = {"index": [1, 0], "name": ["rule:b", "rule:a"]}
    manifest = codec.from_json(document)
    assert manifest.rules.rows() == [RuleEntry(0, "a", 1, "y"), RuleEntry(1, "b", 2, "x")]
    assert manifest.counters.slots.rows() == [CounterSlot(0, "rule:a"), CounterSlot(1, "rule:b")]


# (case, edit of a good manifest, fragment of the one-line error)
BAD: list[tuple[str, Any, str]] = [
    ("not an object", lambda d: [d], "not a JSON object"),
    ("format 3", lambda d: {**d, "format": 3}, "format 3 is not supported"),
    ("format 1 artifact", lambda d: {**d, "format": 1}, "format 1 is not supported"),
    (
        "no policy",
        lambda d: {k: v for k, v in d.items() if k != "policy"},
        "'policy' is a required",
    ),
    ("log rate", lambda d: {**d, "log_rate": -1}, "$.log_rate"),
    ("record generation", lambda d: {**d, "fw_load": {"generation": 2}}, "$.fw_load.generation"),
    ("slot index", lambda d: _column(d, "index", ["0", 1]), "$.counters.slots.index[0]"),
]


def _column(document: dict[str, Any], field: str, values: list[Any]) -> dict[str, Any]:
    document["counters"]["slots"][field] = values
    return document


@pytest.mark.parametrize(("edit", "fragment"), [c[1:] for c in BAD], ids=[c[0] for c in BAD])
def test_bad_manifests_give_one_line(edit: Any, fragment: str) -> None:
    raw = json.dumps(edit(_fixture())).encode()
    with pytest.raises(codec.ManifestError) as caught:
        codec.decode(raw)
    assert fragment in str(caught.value) and "\n" not in str(caught.value)


def test_a_format_1_record_upgrades_only_when_asked() -> None:
    document = _fixture()
    document["format"] = 1
    document["rules"] = [{"id": 0, "name": "a", "priority": 1, "action": "allow"}]
    document["counters"]["slots"] = [{"index": 0, "name": "rule:a"}]
    raw = json.dumps(document).encode()
    assert codec.decode(raw, upgrade=True).rules.rows() == [RuleEntry(0, "a", 1, "allow")]
    with pytest.raises(codec.ManifestError, match="format 1"):
        codec.decode(raw)


def test_layouts_the_compiler_packs_are_the_shared_ones() -> None:
    assert tables_plan.CFG.format.startswith(layout.CFG_HEADER.format)
    assert tables_plan.RULE is layout.RULE_VALUE
    assert [layout.image_stride(n) for n in (1, 8, 9, 16)] == [8, 8, 16, 16]
    assert layout.generation_map("fwc_cfg", 1) == "fwc_cfg1"
    assert layout.generation_base("fwc_cfg0") == "fwc_cfg"
    assert layout.generation_base("fwc_counters") is None


def test_every_tables_seed_names_generation_0_of_a_map_pair() -> None:
    plan = make_plan(policy_file(str(EDGE)), "tables", False)
    names = {m.name for m in plan.maps}
    for seed in plan.seeds:
        base = layout.generation_base(seed.map)
        assert base is not None, seed.map
        assert {layout.generation_map(base, g) for g in layout.GENERATIONS} <= names
