"""The shared subcommand dispatcher: exit codes for usage errors, user errors and Ctrl-C."""

from __future__ import annotations

import argparse
import types

import pytest

from fwc import dispatch as dispatch_module
from fwc.dispatch import dispatch


class Boom(Exception):
    pass


def fake_command(behaviour: BaseException | None) -> types.ModuleType:
    module = types.ModuleType("fake_cmd")

    def add_arguments(parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--flag", action="store_true")

    def run(args: argparse.Namespace) -> int:
        if behaviour is not None:
            raise behaviour
        return 0

    module.add_arguments = add_arguments  # type: ignore[attr-defined]
    module.run = run  # type: ignore[attr-defined]
    return module


def run_with(monkeypatch: pytest.MonkeyPatch, module: types.ModuleType | BaseException) -> int:
    def import_module(name: str) -> types.ModuleType:
        if isinstance(module, BaseException):
            raise module
        return module

    monkeypatch.setattr(dispatch_module.importlib, "import_module", import_module)
    return dispatch("prog", "test", "pkg", {"go": ("cmd_go", "go")}, (Boom,), ["go"])


@pytest.mark.parametrize(
    ("module", "status"),
    [
        (fake_command(None), 0),
        (fake_command(Boom("bad input")), 2),
        (fake_command(KeyboardInterrupt()), 130),
        (KeyboardInterrupt(), 130),  # Ctrl-C while the command module is still importing
    ],
)
def test_exit_status(
    monkeypatch: pytest.MonkeyPatch, module: types.ModuleType | BaseException, status: int
) -> None:
    assert run_with(monkeypatch, module) == status


def test_no_command_is_a_usage_error() -> None:
    assert dispatch("prog", "test", "pkg", {"go": ("cmd_go", "go")}, (Boom,), []) == 2
