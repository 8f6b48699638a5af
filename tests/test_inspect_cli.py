"""`fw-load inspect`: summaries of good artifacts, one line and exit 2 for bad ones."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import loader_fixtures
import pytest

from fwc.loader.cli import main

ROOT = Path(__file__).resolve().parent.parent


def test_text_summary(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = loader_fixtures.build(tmp_path)
    assert main(["inspect", str(path)]) == 0
    out = capsys.readouterr().out
    insns = loader_fixtures.insn_count(loader_fixtures.compiled("xdp_pass_count.c"))
    for expected in [
        f"policy    fixture  source sha256 {'ab' * 32}",
        f"program   fwc_xdp  section xdp  {insns} instructions  license GPL",
        "fwc_counters  percpu_array  4    16     2",
        "fwc_action  .fwc.seed.fwc_action  records  1",
        "0   1         allow   count_all",
        "1     default",
    ]:
        assert expected in out


def test_json_summary(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = loader_fixtures.build(tmp_path)
    assert main(["inspect", str(path), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["artifact"]["insn_count"] == doc["manifest"]["program"]["insn_count"]
    assert doc["artifact"]["size"] == path.stat().st_size
    assert doc["manifest"]["policy"]["sha256"] == "ab" * 32
    assert doc["manifest"]["maps"][0]["name"] == "fwc_counters"


BAD = [
    ("format 1", {"edit": lambda m: m.update(format=1)}, "manifest format 1 is not supported"),
    ("no manifest", {"sections": {".fwc.manifest": None}}, "no manifest"),
    ("insn count", {"edit": lambda m: m["program"].update(insn_count=1)}, "the manifest says 1"),
]


@pytest.mark.parametrize(("kwargs", "fragment"), [b[1:] for b in BAD], ids=[b[0] for b in BAD])
def test_bad_artifact_is_refused_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], kwargs: dict, fragment: str
) -> None:
    path = loader_fixtures.build(tmp_path, **kwargs)
    assert main(["inspect", str(path)]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith(f"fw-load inspect: {path}: ")
    assert fragment in captured.err
    assert captured.err.count("\n") == 1


def test_missing_file_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["inspect", str(tmp_path / "nope.o")]) == 2
    assert "cannot read" in capsys.readouterr().err


def test_usage_error_exits_2() -> None:
    with pytest.raises(SystemExit) as caught:
        main(["inspect"])
    assert caught.value.code == 2


def test_console_script_has_no_traceback(tmp_path: Path) -> None:
    junk = tmp_path / "junk.o"
    junk.write_bytes(b"\x7fELF" + bytes(20))
    done = subprocess.run(
        [str(Path(sys.executable).parent / "fw-load"), "inspect", str(junk)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 2
    assert "Traceback" not in done.stderr
    assert "not a readable ELF object" in done.stderr


def test_inspect_a_compiled_policy(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from fwc.compiler.cli import main as fwc_main

    out = tmp_path / "edge-web.o"
    assert (
        fwc_main(
            ["compile", str(ROOT / "policies" / "edge-web.yaml"), "-o", str(out), "--no-cache"]
        )
        == 0
    )
    capsys.readouterr()
    assert main(["inspect", str(out), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    manifest = doc["manifest"]
    assert manifest["policy"]["name"] == "edge-web"
    assert doc["artifact"]["insn_count"] == manifest["program"]["insn_count"] > 0
    slots = manifest["counters"]["slots"]["name"]
    assert slots[-4:] == ["default", "malformed", "non_ip", "would_drop"]
    assert manifest["rules"]["id"] == list(range(len(manifest["rules"]["name"])))
