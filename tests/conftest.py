"""Shared pytest fixtures: paths into the repository, and a private control-socket directory."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from fwc.loader.daemon import control

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def repo_root() -> Path:
    return ROOT


@pytest.fixture
def control_dir(monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A short private directory in place of /run/fwc (socket paths are limited to 108 bytes)."""
    directory = Path(tempfile.mkdtemp(prefix="fwcc", dir="/tmp"))
    monkeypatch.setattr(control, "CONTROL_DIR", str(directory))
    try:
        yield directory
    finally:
        shutil.rmtree(directory, ignore_errors=True)
