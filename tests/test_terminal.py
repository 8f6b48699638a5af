"""Control characters never reach a terminal raw (issue 11 item 14)."""

from __future__ import annotations

from pathlib import Path

import loader_fixtures
import pytest

from fwc.compiler.check import CheckResult, check_file
from fwc.compiler.cli import main as fwc
from fwc.compiler.reports.formats import render
from fwc.loader.cli import main as fw_load
from fwc.terminal import escape, escape_lines

HOSTILE = "a\x1b[2Jb\rc\nd\x07e\x9bf\u202eg\x7f"


@pytest.mark.parametrize(
    ("text", "escaped"),
    [
        ("plain text", "plain text"),
        ("\x1b[31mred", "\\x1b[31mred"),
        ("one\ntwo", "one\\x0atwo"),
        ("cr\rforged", "cr\\x0dforged"),
        ("bidi\u202eevil", "bidi\\u202eevil"),
        ("c1\x9b", "c1\\x9b"),
        ("tab\there", "tab\\x09here"),
        ("ünïcödé ok", "ünïcödé ok"),
    ],
)
def test_escape(text: str, escaped: str) -> None:
    assert escape(text) == escaped


def test_escape_lines_keeps_newlines() -> None:
    assert escape_lines("a\x1b\nb\r\n") == "a\\x1b\nb\\x0d\n"


def _no_raw_control(text: str) -> None:
    assert not any(c in text for c in "\x1b\r\x07\x9b\u202e\x7f"), repr(text)


@pytest.mark.parametrize("fmt", ["text", "github"])
def test_check_reports_escape(tmp_path: Path, fmt: str) -> None:
    # the file name and a value both carry controls; the value reaches the message
    policy = tmp_path / f"p{HOSTILE.replace(chr(10), '')}.yaml"
    policy.write_text(
        f'name: "x{HOSTILE.encode("unicode_escape").decode()}"\n'
        "rules:\n  - {name: r, priority: 1, action: allow}\n"
    )
    result = CheckResult((check_file(policy),))
    assert result.errors
    out = render(result, fmt)
    _no_raw_control(out)
    assert "\\x1b" in out
    assert out.count("\n") == len(result.findings) + 1


def test_check_with_color_keeps_only_its_own_escapes(tmp_path: Path) -> None:
    policy = tmp_path / "p\x1b[2J.yaml"
    policy.write_text("rules: 3\n")
    out = render(CheckResult((check_file(policy),)), "text", color=True)
    assert "\x1b[2J" not in out and "\\x1b[2J" in out
    assert "\x1b[31m" in out  # the error colour is ours


def test_inspect_escapes_manifest_text(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    def hostile_names(manifest: dict[str, object]) -> None:
        manifest["rules"]["name"][0] = "evil\x1b[2J\rforged"  # type: ignore[index]
        manifest["counters"]["slots"]["name"][0] = "rule:\x1b]0;title\x07"  # type: ignore[index]

    path = loader_fixtures.build(tmp_path, edit=hostile_names)
    assert fw_load(["inspect", str(path)]) == 0
    out = capsys.readouterr().out
    _no_raw_control(out)
    assert "evil\\x1b[2J\\x0dforged" in out


def test_errors_are_one_escaped_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert fw_load(["inspect", str(tmp_path / "x\x1b[2J\nforged.o")]) == 2
    err = capsys.readouterr().err
    _no_raw_control(err)
    assert err.count("\n") == 1
    assert fwc(["compile", str(tmp_path / "y\x1b[2J.yaml"), "-o", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    _no_raw_control(err)


def test_explain_escapes_the_path(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    policy = tmp_path / "e\x1b[2J.yaml"
    policy.write_text((Path(__file__).parent.parent / "policies" / "edge-web.yaml").read_text())
    argv = ["explain", str(policy), "--src", "203.0.113.9", "--dst", "192.0.2.10"]
    assert fwc([*argv, "--proto", "tcp", "--dport", "22"]) == 0
    out = capsys.readouterr().out
    _no_raw_control(out)
    assert "e\\x1b[2J.yaml" in out
