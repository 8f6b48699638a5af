"""The YAML loader: values with places, and a finding for each kind of hostile input."""

from __future__ import annotations

import datetime
import hashlib
from pathlib import Path

import pytest

from fwc.compiler.policy.source import MAX_DEPTH, load_bytes, load_file


@pytest.mark.parametrize(
    ("text", "path", "line", "column"),
    [
        (b"a: 1\nb:\n  - x\n  - y\n", ("b", 1), 4, 5),
        (b"a: 1\nb:\n  - x\n  - y\n", ("b",), 3, 3),
        (b"rules:\n  - name: r\n    priority: 5\n", ("rules", 0, "priority"), 3, 15),
        (b"{a: [1, 2, {b: c}]}", ("a", 2, "b"), 1, 16),
        (b"a: 1\n", ("a", "missing", 3), 1, 4),
        (b"a: 1\n", (), 1, 1),
    ],
)
def test_where_points_at_the_value(
    text: bytes, path: tuple[str | int, ...], line: int, column: int
) -> None:
    doc, findings = load_bytes(text, "p.yaml")
    assert findings == [] and doc is not None
    loc = doc.where(path)
    assert (loc.file, loc.line, loc.column) == ("p.yaml", line, column)


def test_every_position_is_recorded() -> None:
    text = b"sets:\n  s: [1, 2]\nrules:\n  - name: r\n    ports: [3, {a: 4}]\n"
    doc, _ = load_bytes(text, "p.yaml")
    assert doc is not None
    assert doc.where(("rules", 0)).line == 4
    assert doc.where(("rules", 0, "ports", 1, "a")).line == 5
    assert doc.positions[("sets", "s", 1)] == (2, 10)
    assert doc.key_where(("rules", 0, "ports")).column == 5


def test_key_where_points_at_the_key() -> None:
    doc, _ = load_bytes(b"rules:\n  - name: r\n    bogus: 1\n", "p.yaml")
    assert doc is not None
    loc = doc.key_where(("rules", 0, "bogus"))
    assert (loc.line, loc.column) == (3, 5)


@pytest.mark.parametrize(
    ("text", "value"),
    [
        (b"a: yes\nb: 0x10\nc: '010'\nd: ~\n", {"a": True, "b": 16, "c": "010", "d": None}),
        (b"a: 2024-01-02\n", {"a": datetime.date(2024, 1, 2)}),
        (b"a: &x [1, 2]\nb: *x\n", {"a": [1, 2], "b": [1, 2]}),
        (b"\xef\xbb\xbfa: 1\n", {"a": 1}),
        (b"a: |\n  x\n", {"a": "x\n"}),
        (b"1: one\n", {"1": "one"}),
        (b"- 1\n- 1.5\n", [1, 1.5]),
        (b"plain\n", "plain"),
    ],
)
def test_values_match_a_safe_loader(text: bytes, value: object) -> None:
    doc, findings = load_bytes(text, "p.yaml")
    assert findings == [] and doc is not None
    assert doc.value == value


@pytest.mark.parametrize(
    ("text", "fid", "line"),
    [
        (b"a: [1, 2\n", "FWC001", 2),
        (b"a: *nowhere\n", "FWC001", 1),
        (b"a: 1\n\xff\n", "FWC002", 2),
        (b"a: 1\x00\n", "FWC002", 1),
        (b"a: 1\nb: 2\na: 3\n", "FWC003", 3),
        (b"a: 1\n---\nb: 2\n", "FWC004", 2),
        (b"a: " + b"[" * (MAX_DEPTH + 1) + b"]" * (MAX_DEPTH + 1) + b"\n", "FWC005", 1),
        (b"", "FWC006", 0),
        (b"# nothing\n", "FWC006", 0),
        (b"a: !!python/object:os.system x\n", "FWC007", 1),
        (b"? [a, b]\n: 1\n", "FWC007", 1),
        (b"a: !!binary xyz\n", "FWC007", 1),
        (b"a: !!int notanint\n", "FWC007", 1),
        (b"a: !custom 1\n", "FWC007", 1),
    ],
)
def test_hostile_input_is_one_finding(text: bytes, fid: str, line: int) -> None:
    doc, findings = load_bytes(text, "p.yaml")
    assert doc is None
    assert [(f.id, f.location.line) for f in findings] == [(fid, line)]


def test_alias_bomb_stops_quickly() -> None:
    lines = ['a0: &a0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    for i in range(1, 10):
        lines.append(f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]")
    doc, findings = load_bytes("\n".join(lines).encode(), "bomb.yaml")
    assert doc is None and [f.id for f in findings] == ["FWC005"]


def test_too_large_file_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("fwc.compiler.policy.source.MAX_BYTES", 10)
    _, findings = load_bytes(b"a: 12345678901\n", "big.yaml")
    assert [f.id for f in findings] == ["FWC005"]


def test_unreadable_path_is_a_finding(tmp_path: Path) -> None:
    doc, findings = load_file(tmp_path)
    assert doc is None and [f.id for f in findings] == ["FWC008"]
    doc, findings = load_file(tmp_path / "missing.yaml")
    assert doc is None and [f.id for f in findings] == ["FWC008"]


def test_sha256_is_of_the_bytes() -> None:
    doc, _ = load_bytes(b"a: 1\n", "p.yaml")
    assert doc is not None
    assert doc.sha256 == hashlib.sha256(b"a: 1\n").hexdigest()
