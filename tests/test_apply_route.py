"""`fw-load apply`'s one route: argparse, then the daemon's control socket when a daemon answers
(its reply printed as the command's own output), else an apply in this process."""

from __future__ import annotations

import os
import socket
import types
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from unittest import mock

import pytest

from fwc.loader import cli
from fwc.loader.apply import report
from fwc.loader.commands import apply as cmd_apply
from fwc.loader.daemon import control
from tests.control_stand_in import stand_in

SESSION = "10.9.9.9 40000 10.0.0.1 22"

ENVIRONMENTS = [
    {},
    {"SSH_CONNECTION": SESSION},
    {"FWC_PIN_ROOT": "/sys/fs/bpf/other/"},
    {"FWC_PIN_ROOT": "relative/root", "SSH_CONNECTION": SESSION},
    {"FWC_PIN_ROOT": ""},
]


@contextmanager
def environment(values: dict[str, str]) -> Iterator[None]:
    cleared = {k: v for k, v in os.environ.items() if k not in ("SSH_CONNECTION", "FWC_PIN_ROOT")}
    with mock.patch.dict(os.environ, {**cleared, **values}, clear=True):
        yield


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_the_request_names_the_pin_root_and_the_session_of_the_environment(
    control_dir: Path, env: dict[str, str]
) -> None:
    with environment(env):
        root = control.pin_root(None)
        with stand_in(root, [control.encode({"code": 0})]) as seen:
            assert cli.main(["apply", "x.o", "--json"]) == 0
    (line,) = seen
    request = control.decode(line)
    assert request["root"] == root == os.path.abspath(env.get("FWC_PIN_ROOT") or "/sys/fs/bpf/fwc")
    assert request["ssh_connection"] == env.get("SSH_CONNECTION")
    assert request["json"] is True and list(request["options"]) == list(control.FIELDS)


def lost(path: str, why: str) -> str:
    return (
        f"fw-load apply: the fw-load run daemon at {path} did not answer ({why}); the policy "
        "is the old or the new one, `fw-load status` says which\n"
    )


INVALID = "its reply is not valid JSON"
CLOSED = "it closed the connection without a reply"

# reply bytes -> exit code, stdout, stderr (the reply's, or why in the one-line error)
REPLIES: list[tuple[bytes | None, int, str, str]] = [
    (control.encode({"code": 0, "stdout": "report\n", "stderr": ""}), 0, "report\n", ""),
    (control.encode({"code": 3, "stdout": "", "stderr": "refused\n"}), 3, "", "refused\n"),
    (
        control.encode({"code": 0, "stdout": 'caf\u00e9 \t"q"\n', "stderr": "\u2603"}),
        0,
        'caf\u00e9 \t"q"\n',
        "\u2603",
    ),
    (b'{"stderr": "e\\n", "code": 1, "stdout": "o"}\n', 1, "o", "e\n"),
    (b'{"code":"one","stdout":"o","stderr":""}\n', 2, "o", ""),
    (b'{"code":0}\n', 0, "", ""),
    (b'{"code":-0,"stdout":"","stderr":""} \n', 0, "", ""),
    (
        control.encode({"code": 0, "stdout": "", "stderr": "", "timing": {"to_reply_ms": 1.5}}),
        0,
        "",
        "",
    ),
    (None, 2, "", CLOSED),
    (b"nonsense\n", 2, "", INVALID),
    (b"[1, 2]\n", 2, "", INVALID),
    (b'{"code":0,"stdout":"\x01","stderr":""}\n', 2, "", INVALID),
]


@pytest.mark.parametrize(("answer", "code", "stdout", "stderr"), REPLIES)
def test_the_daemons_reply_is_printed_or_a_one_line_error(
    control_dir: Path,
    capsys: pytest.CaptureFixture[str],
    answer: bytes | None,
    code: int,
    stdout: str,
    stderr: str,
) -> None:
    root = str(control_dir / "pins")
    path = control.socket_path(root)
    expected_err = lost(path, stderr) if stderr in (CLOSED, INVALID) else stderr
    argv = ["apply", "p.o", "--pin-root", root, "--keep-access", "10.1.1.1:22"]
    with stand_in(root, [answer]) as requests:
        assert cli.main(argv) == code
    assert capsys.readouterr() == (stdout, expected_err)
    assert len(requests) == 1


class LocalApply:
    """Stands in for the apply in this process: records the options it got."""

    def __init__(self) -> None:
        self.calls: list[report.ApplyOptions] = []

    def __call__(self, opts: report.ApplyOptions, as_json: bool) -> report.Outcome:
        self.calls.append(opts)
        return report.Outcome(0, "applied here\n", "")


@pytest.mark.parametrize("listener", ["none", "stale", "--no-daemon"])
def test_without_an_answering_daemon_the_command_applies_itself(
    control_dir: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    listener: str,
) -> None:
    root = str(control_dir / "pins")
    local = LocalApply()
    monkeypatch.setattr(cmd_apply.report, "execute", local)
    argv = ["apply", "p.o", "--pin-root", root]
    if listener == "stale":
        dead = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        dead.bind(control.socket_path(root))
        dead.close()
    if listener == "--no-daemon":
        with stand_in(root, [control.encode({"code": 0})]) as seen:
            assert cli.main([*argv, "--no-daemon"]) == 0
        assert seen == []
    else:
        assert cli.main(argv) == 0
    assert capsys.readouterr() == ("applied here\n", "")
    (opts,) = local.calls
    assert (opts.artifact, str(opts.root)) == (Path("p.o"), root)


class RefusingSocket:
    """A socket whose connect fails as a 0600 socket does for a user."""

    def __init__(self, *args: object) -> None:
        pass

    def __enter__(self) -> RefusingSocket:
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    def connect(self, path: str) -> None:
        raise PermissionError(13, "Permission denied")


@pytest.mark.parametrize(
    ("raised", "code", "stderr"),
    [
        ("permission", 2, "fw-load apply: {path}: Permission denied; run it as root\n"),
        ("interrupt", 130, ""),
    ],
)
def test_permission_and_ctrl_c(
    control_dir: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    raised: str,
    code: int,
    stderr: str,
) -> None:
    root = str(control_dir / "pins")
    if raised == "permission":
        fake = types.SimpleNamespace(AF_UNIX=0, SOCK_STREAM=0, socket=RefusingSocket)
        monkeypatch.setattr(control, "socket", fake)
    else:

        def interrupted(root: str, request: object) -> None:
            raise KeyboardInterrupt

        monkeypatch.setattr(control, "ask", interrupted)
    assert cli.main(["apply", "p.o", "--pin-root", root]) == code
    assert capsys.readouterr() == ("", stderr.format(path=control.socket_path(root)))
