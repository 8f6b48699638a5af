"""One policy name rule (artifact/names.py), checked where a name enters, on both sides."""

from __future__ import annotations

import itertools
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import loader_fixtures
import pytest

from fwc.artifact import names
from fwc.artifact import schema as manifest_schema
from fwc.compiler.policy import schema as policy_schema
from fwc.compiler.policy.source import load_bytes
from fwc.loader.cli import main as fw_load
from fwc.loader.errors import LoaderError
from fwc.loader.node import pins

# (name, is it a policy name)
NAMES = [
    ("edge-web", True),
    ("a", True),
    ("0_x-y", True),
    ("a" * 48, True),
    ("a" * 49, False),
    ("", False),
    ("a\n", False),
    ("a\nb", False),
    ("x/../../escaped", False),
    ("..", False),
    ("_trash-x", False),
    ("_staging-x", False),
    ("-a", False),
    ("Edge", False),
    ("a.b", False),
    ("a\x1b[2J", False),
]


@pytest.mark.parametrize(("name", "good"), NAMES)
def test_the_rule(name: str, good: bool) -> None:
    assert names.is_policy_name(name) is good
    if good:
        assert names.check_policy_name(name) == name
    else:
        with pytest.raises(names.PolicyNameError) as caught:
            names.check_policy_name(name)
        assert "\n" not in str(caught.value)


@pytest.mark.parametrize(("name", "good"), NAMES)
def test_policy_schema_agrees(name: str, good: bool) -> None:
    text = f"name: {json.dumps(name)}\nrules:\n  - name: r\n    priority: 1\n    action: allow\n"
    doc, loaded = load_bytes(text.encode(), "p.yaml")
    assert loaded == [] and doc is not None
    found = [f.id for f in policy_schema.validate(doc)]
    assert (found == []) is good, found


@pytest.mark.parametrize(("name", "good"), NAMES)
def test_manifest_schema_agrees(name: str, good: bool) -> None:
    errors = list(manifest_schema._validator().iter_errors({"policy": {"name": name}}))
    assert any(list(e.path) == ["policy", "name"] for e in errors) is not good


def test_published_schema_holds_the_rule() -> None:
    published = policy_schema.schema()["properties"]["name"]["pattern"]
    assert published == names.SCHEMA_PATTERN


@pytest.mark.parametrize("name", [n for n, good in NAMES if not good])
def test_no_pin_path_for_a_bad_name(tmp_path: Path, name: str) -> None:
    with pytest.raises(LoaderError, match="is not a policy name"):
        pins.policy_pins(tmp_path, name)
    with pytest.raises(LoaderError, match="is not a policy name"):
        pins.staging_pins(tmp_path, name)


def test_listing_skips_what_is_no_policy(tmp_path: Path) -> None:
    for entry in ("edge", "_staging-edge-1", "_trash-edge-2", "a\n", "Upper"):
        (tmp_path / entry).mkdir()
    assert [p.dir.name for p in pins.policies(tmp_path)] == ["edge"]


@pytest.mark.parametrize("command", ["stats", "events", "detach"])
def test_commands_refuse_a_bad_name(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], command: str
) -> None:
    argv = [command, "--pin-root", str(tmp_path), "--policy", "x/../../escaped"]
    if command == "detach":
        argv.append("--all")
    assert fw_load(argv) == 2
    err = capsys.readouterr().err
    assert "is not a policy name" in err and err.count("\n") == 1
    assert list(tmp_path.iterdir()) == []


@pytest.fixture
def bpffs() -> Iterator[Path]:
    """A private pin root on the host's bpffs, removed afterwards."""
    root = Path("/sys/fs/bpf") / f"fwc-sechard-names-{os.getpid()}-{next(_counter)}"
    root.mkdir()
    try:
        yield root
    finally:
        pins.remove_tree(root)


_counter = itertools.count()


@pytest.mark.kernel
@pytest.mark.parametrize("name", ["x/../../escaped", "_trash-x", "_staging-x", "a\n", ".."])
def test_apply_of_a_forged_name_pins_nothing(
    tmp_path: Path, bpffs: Path, capsys: pytest.CaptureFixture[str], name: str
) -> None:
    def forge(manifest: dict[str, Any]) -> None:
        manifest["policy"]["name"] = name

    artifact = loader_fixtures.build(tmp_path, edit=forge)
    assert fw_load(["apply", "--no-daemon", "--pin-root", str(bpffs), str(artifact)]) == 2
    err = capsys.readouterr().err
    assert "$.policy.name" in err and err.count("\n") == 1
    assert list(bpffs.iterdir()) == []
    assert not (bpffs.parent / "escaped").exists()
