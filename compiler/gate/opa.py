"""The `opa` binary as an engine: `opa eval --format json` and `opa test --format json`.

OPA's own compiler rejects calls to functions it does not know, so no built-in scan is
needed here; every error it prints becomes an EngineFailure.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

from fwc.compiler.gate.modules import Module
from fwc.compiler.gate.regopy import EngineFailure

TIMEOUT_SECONDS = 120


def find_opa() -> str | None:
    return shutil.which("opa")


def _run(args: list[str], stdin: str | None) -> tuple[int, str, str]:
    binary = find_opa()
    if binary is None:
        raise EngineFailure("the `opa` binary is not on PATH")
    try:
        done = subprocess.run(
            [binary, *args],
            input=stdin,
            capture_output=True,
            text=True,
            timeout=TIMEOUT_SECONDS,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise EngineFailure(f"cannot run {binary}: {exc}") from None
    return done.returncode, done.stdout, done.stderr


def _paths(modules: list[Module], data_file: Path | None) -> list[str]:
    paths = [str(m.path) for m in modules]
    return [*paths, str(data_file)] if data_file else paths


def _errors(stdout: str, stderr: str) -> str:
    try:
        doc = json.loads(stdout)
    except ValueError:
        return (stderr or stdout).strip() or "opa failed without a message"
    errors = doc.get("errors", []) if isinstance(doc, dict) else []
    lines = []
    for err in errors:
        loc = err.get("location") or {}
        where = f"{loc.get('file')}:{loc.get('row')}: " if loc.get("file") else ""
        lines.append(f"{where}{err.get('message', err)}")
    return "; ".join(lines) or (stderr or stdout).strip()


class _DataFile:
    """The merged data documents as one JSON file for `--data`, removed afterwards."""

    def __init__(self, data: dict[str, Any]) -> None:
        self.data = data
        self.dir: tempfile.TemporaryDirectory[str] | None = None

    def __enter__(self) -> Path | None:
        if not self.data:
            return None
        self.dir = tempfile.TemporaryDirectory(prefix="fwc-rego-")
        path = Path(self.dir.name) / "data.json"
        path.write_text(json.dumps(self.data), encoding="utf-8")
        return path

    def __exit__(self, *exc: object) -> None:
        if self.dir is not None:
            self.dir.cleanup()


def evaluate(modules: list[Module], data: dict[str, Any], input_doc: Any, query: str) -> Any:
    with _DataFile(data) as data_file:
        args = ["eval", "--format", "json", "--stdin-input"]
        for path in _paths(modules, data_file):
            args += ["--data", path]
        code, out, err = _run([*args, query], json.dumps(input_doc))
    if code != 0:
        raise EngineFailure(_errors(out, err))
    try:
        results = json.loads(out).get("result") or []
    except (ValueError, AttributeError):
        raise EngineFailure(f"opa eval printed something that is not JSON: {out[:200]}") from None
    if not results:
        return None
    return results[0].get("bindings", {}).get("x")


def run_tests(modules: list[Module], data: dict[str, Any]) -> list[tuple[str, str, str | None]]:
    """(package, test name, None or why it failed) for every test `opa test` finds."""
    with _DataFile(data) as data_file:
        code, out, err = _run(["test", "--format", "json", *_paths(modules, data_file)], None)
    try:
        reports = json.loads(out)
    except ValueError:
        raise EngineFailure(_errors(out, err)) from None
    if not isinstance(reports, list):
        raise EngineFailure(_errors(out, err))
    results: list[tuple[str, str, str | None]] = []
    for report in reports:
        package = str(report.get("package", "")).removeprefix("data.")
        name = str(report.get("name", ""))
        why: str | None = None
        if report.get("error"):
            error = report["error"]
            why = error.get("message", str(error)) if isinstance(error, dict) else str(error)
        elif report.get("fail"):
            why = "evaluated to false or undefined"
        results.append((package, name, why))
    if code != 0 and not results:
        raise EngineFailure(_errors(out, err))
    return results
