"""Hostile YAML at the gate (issue 11): explicit tags and merge keys are findings, a stdout
that fails is one line and exit 2; a bounded tag fuzz of the whole gate, Rego included."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fwc.compiler.check import CheckOptions, check_file
from fwc.compiler.cli import main
from fwc.compiler.gate.rego import RegoOptions, gate

ROOT = Path(__file__).resolve().parent.parent
EDGE = ROOT / "policies" / "edge-web.yaml"
RULE = "rules:\n  - name: r\n    priority: 1\n    action: allow\n"

# (policy text, finding id, words of its message)
CASES = [
    (f"name: t\n{RULE}    log: !!bool x\n", "FWC007", "'x' is not a valid !!bool"),
    (f"name: t\n{RULE}    description: !!timestamp x\n", "FWC007", "not a valid !!timestamp"),
    (f"name: t\n!!int : \n{RULE}", "FWC007", "'' is not a valid !!int"),
    (f"name: t\n{RULE}    description: !!float x\n", "FWC007", "not a valid !!float"),
    (
        f"name: t\n{RULE}    log: !!binary '%%'\n",
        "FWC011",
        "must be true or false, not binary data",
    ),
    (f"name: t\n{RULE}    log: !!python/name:os.system x\n", "FWC007", "unsupported tag"),
    (
        "name: t\nbase: &b {priority: 1, action: allow}\nrules:\n  - name: r\n    <<: *b\n",
        "FWC007",
        "YAML merge keys (<<) are not supported",
    ),
]


@pytest.mark.parametrize(("text", "fid", "words"), CASES)
def test_tags_are_findings(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str, fid: str, words: str | None
) -> None:
    path = tmp_path / "t.yaml"
    path.write_text(text)
    assert main(["check", str(path)]) == 1
    out = capsys.readouterr()
    assert fid in out.out and "Traceback" not in out.err
    if words:
        assert words in out.out


_FWC = "import sys; from fwc.compiler.cli import main; sys.exit(main())"


def _fwc(*argv: str, stdout: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", _FWC, *argv],
        stdout=stdout,  # type: ignore[arg-type]
        stderr=subprocess.PIPE,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.mark.parametrize("fmt", ["text", "json", "sarif", "github", "junit"])
def test_stdout_full(fmt: str) -> None:
    with open("/dev/full", "w") as full:
        done = _fwc("check", "--format", fmt, str(EDGE), stdout=full)
    assert done.returncode == 2
    assert done.stderr == "fwc check: cannot write to stdout: No space left on device\n"


def test_stdout_closed() -> None:
    code = (
        "import os, sys; os.close(1); from fwc.compiler.cli import main; "
        f"sys.exit(main(['check', {str(EDGE)!r}]))"
    )
    # a child whose fd 1 is closed before Python starts: sys.stdout is None there
    done = subprocess.run(
        f"{sys.executable} -c 'import sys; from fwc.compiler.cli import main; sys.exit(main())'"
        f" check {EDGE} >&-",
        shell=True,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2, done.stderr
    assert done.stderr == "fwc check: stdout is closed; nothing can be reported\n"
    # the same, closed after start-up (sys.stdout still set, its fd gone)
    late = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert late.returncode == 2, late.stderr
    assert "Traceback" not in late.stderr and late.stderr.count("\n") == 1


TAGS = [
    "!!bool", "!!int", "!!float", "!!str", "!!null", "!!timestamp", "!!binary", "!!seq",
    "!!map", "!!set", "!!omap", "!!pairs", "!!merge", "!!value", "!!yaml", "!", "!local",
    "!<tag:yaml.org,2002:int>", "!!python/object:os.system", "!!python/tuple",
]  # fmt: skip
VALUES = ["", "x", "0", "-1", "1e999", "0x1f", "2001-12-14", "true", "~", "[]", "{}", "<<"]
SEED = EDGE.read_text()
_gate_options = RegoOptions()


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(st.data())
def test_tag_fuzz_of_the_gate(tmp_path: Path, data: st.DataObject) -> None:
    """A tag (and sometimes a value) put before a value or a key of edge-web: findings only,
    never an exception, each file within the time bound, Rego included."""
    lines = SEED.splitlines()
    for _ in range(data.draw(st.integers(1, 3))):
        i = data.draw(st.integers(0, len(lines) - 1))
        line = lines[i]
        tag = data.draw(st.sampled_from(TAGS))
        colon = line.find(": ")
        if colon >= 0 and data.draw(st.booleans()):
            value = data.draw(st.sampled_from(["keep", *VALUES]))
            rest = line[colon + 2 :] if value == "keep" else value
            lines[i] = f"{line[: colon + 2]}{tag} {rest}"
        else:
            indent = len(line) - len(line.lstrip(" -"))
            lines[i] = f"{line[:indent]}{tag} {line[indent:]}"
    path = tmp_path / "fuzz.yaml"
    path.write_text("\n".join(lines) + "\n")
    start = time.perf_counter()
    result = check_file(
        path, CheckOptions(gate=lambda policy, done: gate(policy, _gate_options, done))
    )
    assert time.perf_counter() - start < 10.0
    assert all(f.message and "\n" not in f.message for f in result.findings)
