"""Bounded reads (issue 11): FIFOs and devices refused with one line, no hang; hostile
manifests a clean artifact error (exit 2, not the lockout refusal's 1)."""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import loader_fixtures
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fwc.files import FileReadError, read_bounded
from fwc.loader.cli import main as fw_load
from fwc.loader.node import pins

_counter = itertools.count()

TIMEOUT = 20  # seconds: a hang fails the test instead of the run


def _run(*argv: str) -> subprocess.CompletedProcess[str]:
    code = "import sys; from fwc.{0}.cli import main; sys.exit(main(sys.argv[1:]))"
    tool, *rest = argv
    module = "loader" if tool == "fw-load" else "compiler"
    return subprocess.run(
        [sys.executable, "-c", code.format(module), *rest],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )


def _one_line(result: subprocess.CompletedProcess[str], fragment: str) -> None:
    assert "Traceback" not in result.stderr
    assert fragment in result.stderr, result.stderr
    assert result.stderr.count("\n") == 1, result.stderr


@pytest.fixture
def bpffs() -> Iterator[Path]:
    """A private pin root on the host's bpffs, removed afterwards."""
    root = Path("/sys/fs/bpf") / f"fwc-sechard-reads-{os.getpid()}-{next(_counter)}"
    root.mkdir()
    try:
        yield root
    finally:
        pins.remove_tree(root)


@pytest.fixture
def fifo(tmp_path: Path) -> Path:
    path = tmp_path / "pipe.o"
    os.mkfifo(path)
    return path


def test_read_bounded(tmp_path: Path) -> None:
    small = tmp_path / "small"
    small.write_bytes(b"x" * 10)
    assert read_bounded(small, 10) == b"x" * 10
    with pytest.raises(FileReadError, match=r"larger than 9 bytes \(10 bytes\)"):
        read_bounded(small, 9)
    with pytest.raises(FileReadError, match="is a directory"):
        read_bounded(tmp_path, 10)
    with pytest.raises(FileReadError, match="is a character device"):
        read_bounded("/dev/zero", 10)
    with pytest.raises(FileReadError, match="No such file"):
        read_bounded(tmp_path / "absent", 10)


def test_fifo_refused(fifo: Path) -> None:
    with pytest.raises(FileReadError, match="is a FIFO, not a regular file"):
        read_bounded(fifo, 10)


@pytest.mark.parametrize(
    "argv",
    [
        ("fw-load", "inspect", "{fifo}"),
        ("fw-load", "apply", "--no-daemon", "--pin-root", "{tmp}", "{fifo}"),
        ("fwc", "check", "--no-rego", "{fifo}"),
        ("fwc", "test", "{fifo}", "{fifo}"),
        ("fwc", "test", "policies/edge-web.yaml", "{fifo}"),
    ],
    ids=["inspect", "apply", "check", "test", "test cases"],
)
def test_fifo_never_hangs(bpffs: Path, fifo: Path, argv: tuple[str, ...]) -> None:
    result = _run(*(a.format(fifo=fifo, tmp=bpffs) for a in argv))
    assert result.returncode in (1, 2)
    assert "Traceback" not in result.stderr + result.stdout
    said = result.stderr + result.stdout
    assert "FIFO" in said or "not a file" in said, said


def test_inspect_dev_zero() -> None:
    result = _run("fw-load", "inspect", "/dev/zero")
    assert result.returncode == 2
    _one_line(result, "/dev/zero: is a character device, not a regular file")


@pytest.mark.parametrize(
    ("manifest", "fragment"),
    [
        (b"[" * 100_000 + b"]" * 100_000, "nests too deeply"),
        (b'{"format":' + b"9" * 5000 + b"}", "cannot be read"),
        (b'{"format":2,"rules":' + b"[" * 5000 + b"]" * 5000 + b"}", "manifest"),
    ],
    ids=["100k brackets", "5000 digits", "deep inside"],
)
@pytest.mark.parametrize("command", ["inspect", "apply"])
def test_hostile_manifest_is_an_artifact_error(
    tmp_path: Path, bpffs: Path, manifest: bytes, fragment: str, command: str
) -> None:
    path = loader_fixtures.build(tmp_path, manifest=manifest)
    argv = ["inspect", str(path)]
    if command == "apply":
        argv = ["apply", "--no-daemon", "--pin-root", str(bpffs), str(path)]
    result = _run("fw-load", *argv)
    assert result.returncode == 2
    _one_line(result, fragment)


_FRAGMENTS = [
    b"[" * 50_000, b"{" * 3000, b"9" * 5000, b"-" + b"9" * 400, b"1e999999", b'"\\ud800"',
    b'"\\u001b[2J"', b"null", b"true", b'""', b"[]", b"{}", b'"x/../../y"', b"\xff", b"\x00",
]  # fmt: skip


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(st.data())
def test_inspect_fuzz_over_mutated_manifests(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], data: st.DataObject
) -> None:
    """Hostile manifest text spliced into a good one: inspect prints it (exit 0) or says in one
    line why not (exit 2), within the time bound, never a traceback."""
    text = json.dumps(loader_fixtures.BASE_MANIFEST, sort_keys=True).encode()
    for _ in range(data.draw(st.integers(1, 3))):
        at = data.draw(st.integers(0, len(text)))
        cut = data.draw(st.integers(0, 8))
        text = text[:at] + data.draw(st.sampled_from(_FRAGMENTS)) + text[at + cut :]
    path = loader_fixtures.build(tmp_path, manifest=text)
    for argv in (["inspect", str(path)], ["inspect", "--json", str(path)]):
        start = time.perf_counter()
        code = fw_load(argv)
        assert time.perf_counter() - start < TIMEOUT
        out = capsys.readouterr()
        assert code in (0, 2)
        if code == 2:
            assert out.err.count("\n") == 1 and "Traceback" not in out.err


def test_rego_data_file_fifo_and_bad_tag(tmp_path: Path, fifo: Path) -> None:
    bad = tmp_path / "data.yaml"
    bad.write_text("fwc: !!bool x\n")
    for data in (fifo, bad):
        result = _run("fwc", "check", "--data", str(data), "policies/edge-web.yaml")
        assert result.returncode == 2
        _one_line(result, "cannot read data file")
