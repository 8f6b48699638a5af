"""`fwc check` end to end: exit codes, paths, formats and flags, through main() and the script."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from fwc.compiler.cli import main

ROOT = Path(__file__).resolve().parent.parent
POLICIES = ROOT / "policies"
BROKEN = ROOT / "tests" / "broken"
CLEAN = "name: clean\nrules:\n  - name: allow_web\n    priority: 1\n    action: allow\n"
WARN = CLEAN + "  - name: also_web\n    priority: 1\n    action: allow\n"
BAD = "name: bad\nrules:\n  - name: r\n    priority: x\n"


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    (tmp_path / "sub").mkdir()
    (tmp_path / "clean.yaml").write_text(CLEAN)
    (tmp_path / "sub" / "warn.yml").write_text(WARN)
    (tmp_path / "sub" / "notes.txt").write_text("not a policy")
    (tmp_path / "sub" / "warn.cases.yaml").write_text("cases: []\n")
    return tmp_path


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(["check", *argv])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize(
    ("files", "flags", "code"),
    [
        (["clean.yaml"], [], 0),
        (["sub/warn.yml"], [], 0),
        (["sub/warn.yml"], ["--fail-on-warn"], 1),
        (["clean.yaml"], ["--fail-on-warn"], 0),
        (["bad.yaml"], [], 1),
        (["clean.yaml", "bad.yaml"], [], 1),
        (["."], [], 1),
        (["sub"], [], 0),
        (["missing.yaml"], [], 2),
        (["clean.yaml", "missing.yaml"], [], 2),
    ],
)
def test_exit_codes(
    tree: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    files: list[str],
    flags: list[str],
    code: int,
) -> None:
    (tree / "bad.yaml").write_text(BAD)
    monkeypatch.chdir(tree)
    assert run(capsys, "--no-rego", *flags, *files)[0] == code


def test_directory_is_every_policy_inside_sorted(
    tree: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tree)
    code, out, _ = run(capsys, "--no-rego", "--format", "json", ".")
    assert code == 0
    assert json.loads(out)["files"] == ["clean.yaml", "sub/warn.yml"]


@pytest.mark.parametrize(
    ("argv", "words"),
    [
        (["--no-rego", "nope.yaml"], "nope.yaml: no such file or directory"),
        (["--no-rego"], "no policy files given"),
        (["--no-rego", "--output", "/nonexistent/dir/out.json", "{clean}"], "cannot write"),
        (["--no-rego", "{empty}"], "no *.yaml or *.yml policy files"),
    ],
)
def test_usage_errors_are_one_line_and_exit_2(
    tree: Path, capsys: pytest.CaptureFixture[str], argv: list[str], words: str
) -> None:
    (tree / "empty").mkdir()
    args = [a.format(clean=tree / "clean.yaml", empty=tree / "empty") for a in argv]
    code, _, err = run(capsys, *args)
    assert code == 2
    assert words in err and len(err.strip().splitlines()) == 1
    assert "Traceback" not in err


def test_bad_flag_is_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["check", "--format", "xml", "x.yaml"])
    assert exc.value.code == 2


def test_every_example_policy_passes(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "--no-rego", str(POLICIES))
    assert code == 0, out


def test_all_findings_of_all_files_in_one_pass(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "--no-rego", "--format", "json", str(BROKEN))
    assert code == 1
    report = json.loads(out)
    ids = {f["id"] for f in report["findings"]}
    assert {"FWC001", "FWC010", "FWC020", "FWC028"} <= ids
    keys = [(f["file"], f["line"], f["column"]) for f in report["findings"]]
    assert keys == sorted(keys)
    assert report["summary"]["files"] == len(list(BROKEN.glob("*.yaml"))) - 1  # minus the dir


def test_output_file_and_text_format(tree: Path, capsys: pytest.CaptureFixture[str]) -> None:
    target = tree / "report.txt"
    code, out, _ = run(capsys, "--no-rego", "--output", str(target), str(tree / "sub"))
    assert code == 0 and out == ""
    text = target.read_text()
    assert "warning FWC028" in text and "\033[" not in text
    # `also_web` repeats `allow_web`: shadowed, deciding the same.
    assert "warning FWC030 rule `also_web` is never reached" in text
    assert text.splitlines()[-1] == "1 file checked: 0 errors, 2 warnings"


def test_text_is_plain_when_not_a_tty(tree: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _, out, _ = run(capsys, "--no-rego", str(tree / "sub"))
    assert "\033[" not in out


def test_installed_console_script_exit_codes(tree: Path) -> None:
    script = shutil.which("fwc", path=str(Path(sys.executable).parent)) or "fwc"
    env = {**os.environ, "NO_COLOR": "1"}
    cases = [(["clean.yaml"], 0), (["bad.yaml"], 1), (["missing.yaml"], 2)]
    (tree / "bad.yaml").write_text(BAD)
    for files, code in cases:
        proc = subprocess.run(
            [script, "check", "--no-rego", *files],
            cwd=tree,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert proc.returncode == code, proc.stderr
        assert "Traceback" not in proc.stderr
    proc = subprocess.run(
        [script, "check", "--no-rego", "bad.yaml"], cwd=tree, capture_output=True, text=True
    )
    assert "bad.yaml:4:15: error FWC011" in proc.stdout


def test_shadowed_rule_carries_its_example_and_cover(capsys: pytest.CaptureFixture[str]) -> None:
    path = str(BROKEN / "fwc030_shadowed.yaml")
    code, out, _ = run(capsys, "--no-rego", "--format", "json", path)
    assert code == 1
    [broken] = [f for f in json.loads(out)["findings"] if f["severity"] == "error"]
    assert (broken["id"], broken["rule"]) == ("FWC030", "deny_ssh_from_10_and_200")
    assert [r["rule"] for r in broken["related"]] == ["allow_ssh_low_half", "allow_ssh_high_half"]
    assert broken["example"]["dport"] == 22 and broken["example"]["proto"] == "tcp"
    _, out, _ = run(capsys, "--no-rego", "--format", "sarif", path)
    results = json.loads(out)["runs"][0]["results"]
    [sarif] = [r for r in results if r["level"] == "error"]
    assert sarif["properties"]["examplePacket"] == broken["example"]
    lines = [loc["physicalLocation"]["region"]["startLine"] for loc in sarif["relatedLocations"]]
    assert lines == [r["line"] for r in broken["related"]]
