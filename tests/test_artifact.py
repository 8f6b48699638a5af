"""Artifact inspection with no kernel: a good artifact's spec, and one clear error per defect."""

from __future__ import annotations

import functools
import subprocess
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import loader_fixtures
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fwc.artifact import codec
from fwc.loader.reader.artifact import ArtifactError, read_artifact

Edit = Callable[[dict[str, Any]], None]


def test_good_artifact_spec(tmp_path: Path) -> None:
    spec = read_artifact(loader_fixtures.build(tmp_path))
    assert (spec.program, spec.section, spec.license) == ("fwc_xdp", "xdp", "GPL")
    assert spec.insn_count == loader_fixtures.insn_count(
        loader_fixtures.compiled("xdp_pass_count.c")
    )
    assert [m.name for m in spec.maps] == ["fwc_counters", "fwc_action"]
    assert spec.map("fwc_counters").type == "percpu_array"
    assert spec.counters_map == "fwc_counters"
    assert spec.counter_slots == ((0, "rule:count_all"), (1, "default"))
    [seed] = spec.seeds
    assert (seed.map, seed.count) == ("fwc_action", 1)
    assert seed.items() == [(bytes(4), (2).to_bytes(4, "little"))]
    assert (spec.policy_name, spec.source_sha256) == ("fixture", "ab" * 32)
    assert codec.decode(spec.manifest_bytes) == spec.manifest


def _set(path: str, value: Any) -> Edit:
    def edit(manifest: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        node: Any = manifest
        for key in parents:
            node = node[int(key)] if isinstance(node, list) else node[key]
        if value is _DELETE:
            del node[last]
        else:
            node[int(last) if isinstance(node, list) else last] = value

    return edit


_DELETE = object()
_EXTRA_MAP = {"name": "fwc_extra", "type": "hash", "key_size": 4, "value_size": 4, "max_entries": 1}


def _without_action_map(manifest: dict[str, Any]) -> None:
    manifest["maps"] = manifest["maps"][:1]
    manifest["seeds"] = []


# (case id, build keyword arguments, expected fragment of the one-line error)
MANIFEST_CASES: list[tuple[str, dict[str, Any], str]] = [
    ("missing manifest", {"sections": {".fwc.manifest": None}}, "no manifest"),
    ("bad json", {"manifest": b'{"format": 1,'}, "not valid UTF-8 JSON"),
    ("not utf-8", {"manifest": b'{"format": "\xff"}'}, "not valid UTF-8 JSON"),
    ("json array", {"manifest": b"[1]"}, "not a JSON object"),
    (
        "format 1",
        {"edit": _set("format", 1)},
        "format 1 is not supported (this fw-load reads format 2)",
    ),
    ("no format", {"edit": _set("format", _DELETE)}, "manifest format None is not supported"),
    ("missing rules", {"edit": _set("rules", _DELETE)}, "'rules' is a required property"),
    ("bad sha256", {"edit": _set("policy.sha256", "xyz")}, "$.policy.sha256"),
    ("insn count", {"edit": _set("program.insn_count", 3)}, "the manifest says 3"),
    ("no program section", {"edit": _set("program.section", "tc")}, "section 'tc' is missing"),
    ("wrong program name", {"edit": _set("program.name", "other")}, "'other' is not defined"),
    (
        "map not in elf",
        {"edit": lambda m: m["maps"].append(_EXTRA_MAP)},
        "map 'fwc_extra' is in the manifest but not in section '.maps'",
    ),
    (
        "map not in manifest",
        {"edit": _without_action_map},
        "map 'fwc_action' is in section '.maps' but not in the manifest",
    ),
    (
        "map size",
        {"edit": _set("maps.0.max_entries", 3)},
        "map 'fwc_counters': the manifest says max_entries 3, the ELF has 2",
    ),
    ("map type", {"edit": _set("maps.1.type", "hash")}, "says type hash, the ELF has array"),
    (
        "missing seed section",
        {"sections": {".fwc.seed.fwc_action": None}},
        "section '.fwc.seed.fwc_action' is missing",
    ),
    (
        "short seed section",
        {"sections": {".fwc.seed.fwc_action": b"1234567"}},
        "has 7 bytes, expected 8",
    ),
    ("seed count", {"edit": _set("seeds.0.count", 2)}, "has 8 bytes, expected 16"),
    ("seed for unknown map", {"edit": _set("seeds.0.map", "nope")}, "no such map"),
    ("seed sizes", {"edit": _set("seeds.0.value_size", 8)}, "key/value sizes differ"),
    ("counters map", {"edit": _set("counters.map", "fwc_action")}, "must be a percpu_array"),
    ("counter slot range", {"edit": _set("counters.slots.index.1", 2)}, "distinct indexes below 2"),
    ("counter slot twice", {"edit": _set("counters.slots.index.1", 0)}, "distinct indexes below 2"),
    ("rules as rows", {"edit": _set("rules", [])}, "$.rules: [] is not of type 'object'"),
    ("rule column missing", {"edit": _set("rules.action", _DELETE)}, "'action' is a required"),
    ("rule column not a list", {"edit": _set("rules.name", "x")}, "$.rules.name: 'x' is not of"),
    ("columns differ", {"edit": _set("rules.priority", [1, 2])}, "columns differ in length"),
    ("rule id not int", {"edit": _set("rules.id.0", "0")}, "$.rules.id[0]: must be an integer"),
    (
        "rule id negative",
        {"edit": _set("rules.id.0", -1)},
        "$.rules.id[0]: must be an integer >= 0",
    ),
    ("rule id bool", {"edit": _set("rules.id.0", True)}, "$.rules.id[0]: must be an integer"),
    ("priority float", {"edit": _set("rules.priority.0", 1.5)}, "$.rules.priority[0]: must be an"),
    ("empty rule name", {"edit": _set("rules.name.0", "")}, "$.rules.name[0]: must be a non-empty"),
    ("action not str", {"edit": _set("rules.action.0", 3)}, "$.rules.action[0]: must be a string"),
    ("slot name", {"edit": _set("counters.slots.name.1", None)}, "$.counters.slots.name[1]: must"),
    ("slot columns", {"edit": _set("counters.slots.index", [0])}, "slots: its columns differ"),
    (
        "bad seed layout",
        {"edit": _set("seeds.0.layout", "rows")},
        "is not one of ['records', 'image']",
    ),
    (
        "image beyond the map",
        {"edit": lambda m: m["seeds"][0].update(layout="image", count=2)},
        "2 elements, the map holds 1",
    ),
    (
        "image of a hash",
        {"edit": lambda m: (m["seeds"][0].update(layout="image"), _set("maps.1.type", "hash")(m))},
        "an image seeds only an array map",
    ),
    (
        "short image",
        {
            "edit": _set("seeds.0.layout", "image"),
            "sections": {".fwc.seed.fwc_action": b"1234"},
        },
        "has 4 bytes, expected 8 (1 elements)",
    ),
    ("long map name", {"edit": _set("maps.0.name", "x" * 16)}, "is too long"),
    # forged names: each would become a pin path outside the policy's directory
    ("name escapes", {"edit": _set("policy.name", "x/../../escaped")}, "$.policy.name"),
    ("name dot-dot", {"edit": _set("policy.name", "..")}, "$.policy.name"),
    ("name trash", {"edit": _set("policy.name", "_trash-x")}, "$.policy.name"),
    ("name staging", {"edit": _set("policy.name", "_staging-x")}, "$.policy.name"),
    ("name newline", {"edit": _set("policy.name", "a\n")}, "$.policy.name"),
    ("name too long", {"edit": _set("policy.name", "a" * 49)}, "$.policy.name"),
    ("name upper", {"edit": _set("policy.name", "Edge")}, "$.policy.name"),
    ("sha256 newline", {"edit": _set("policy.sha256", "ab" * 32 + "\n")}, "$.policy.sha256"),
    ("map name path", {"edit": _set("maps.1.name", "../fwc_action")}, "$.maps[1].name"),
    ("map name newline", {"edit": _set("maps.1.name", "fwc_action\n")}, "$.maps[1].name"),
    ("counters map path", {"edit": _set("counters.map", "../x")}, "$.counters.map"),
]


@pytest.mark.parametrize(
    ("kwargs", "fragment"), [c[1:] for c in MANIFEST_CASES], ids=[c[0] for c in MANIFEST_CASES]
)
def test_inconsistent_artifacts(tmp_path: Path, kwargs: dict[str, Any], fragment: str) -> None:
    path = loader_fixtures.build(tmp_path, **kwargs)
    with pytest.raises(ArtifactError) as caught:
        read_artifact(path)
    message = str(caught.value)
    assert fragment in message
    assert message.startswith(f"{path}: ")
    assert "\n" not in message


def _truncate(length: int) -> Callable[[bytes], bytes]:
    return lambda data: data[:length]


FILE_CASES: list[tuple[str, Callable[[bytes], bytes], str]] = [
    ("empty", _truncate(0), "not a readable ELF object"),
    ("header only", _truncate(40), "not a readable ELF object"),
    ("half", lambda data: data[: len(data) // 2], "not a readable ELF object"),
    ("text", lambda _: b"hello, this is not an object\n" * 4, "not a readable ELF object"),
]


@pytest.mark.parametrize(
    ("corrupt", "fragment"), [c[1:] for c in FILE_CASES], ids=[c[0] for c in FILE_CASES]
)
def test_corrupt_files(tmp_path: Path, corrupt: Callable[[bytes], bytes], fragment: str) -> None:
    path = loader_fixtures.build(tmp_path)
    path.write_bytes(corrupt(path.read_bytes()))
    with pytest.raises(ArtifactError, match=fragment) as caught:
        read_artifact(path)
    assert "\n" not in str(caught.value)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ArtifactError, match="cannot read: No such file or directory"):
        read_artifact(tmp_path / "absent.o")


def test_not_a_bpf_object(tmp_path: Path) -> None:
    source = tmp_path / "host.c"
    source.write_text("int f(void) { return 1; }\n")
    obj = tmp_path / "host.o"
    subprocess.run([loader_fixtures.CLANG, "-c", str(source), "-o", str(obj)], check=True)
    with pytest.raises(ArtifactError, match="not a BPF object"):
        read_artifact(obj)


def test_allocated_manifest_section_is_refused(tmp_path: Path) -> None:
    path = loader_fixtures.build(tmp_path)
    out = tmp_path / "alloc.o"
    subprocess.run(
        [
            loader_fixtures.OBJCOPY,
            "--set-section-flags=.fwc.manifest=alloc,readonly",
            str(path),
            str(out),
        ],
        check=True,
    )
    with pytest.raises(ArtifactError, match="non-allocated"):
        read_artifact(out)


@functools.cache
def _good_bytes() -> bytes:
    with tempfile.TemporaryDirectory() as tmp:
        return loader_fixtures.build(Path(tmp)).read_bytes()


# offsets near the start hit the ELF header; the rest land anywhere, section headers included
_OFFSETS = st.one_of(st.integers(0, 63), st.integers(0, 1 << 20))


@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(flips=st.lists(st.tuples(_OFFSETS, st.integers(1, 255)), min_size=1, max_size=8))
def test_damaged_artifacts_never_escape_as_other_errors(
    tmp_path: Path, flips: list[tuple[int, int]]
) -> None:
    data = bytearray(_good_bytes())
    for offset, mask in flips:
        data[offset % len(data)] ^= mask
    path = tmp_path / "damaged.o"
    path.write_bytes(bytes(data))
    try:
        read_artifact(path)
    except ArtifactError as exc:
        assert "\n" not in str(exc)
