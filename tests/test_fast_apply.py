"""`fw-load apply` through the daemon without argparse: the same request as the full parser's,
the same output, errors and exit codes, the full route for everything else, and a lean import."""

from __future__ import annotations

import contextlib
import io
import json
import os
import socket
import types
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from unittest import mock

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fwc import dispatch as dispatch_module
from fwc.loader import cli
from fwc.loader.commands import apply as cmd_apply
from fwc.loader.daemon import control, fast_apply
from fwc.loader.errors import LoaderError
from tests.control_stand_in import stand_in

SESSION = "10.9.9.9 40000 10.0.0.1 22"


def full_route_request(argv: list[str]) -> dict[str, object] | None:
    """The request `fw-load ARGV` sends through argparse and cmd_apply; None when it sends
    none (a usage error, help, --no-daemon)."""
    try:
        parsed = dispatch_module._parse(
            "fw-load", "Load fwc artifacts onto a node.", "fwc.loader", cli.COMMANDS, argv
        )
    except SystemExit:
        return None
    if parsed is None:
        return None
    _, args = parsed
    if args.command != "apply" or args.no_daemon:
        return None
    return cmd_apply.request(args, control.pin_root(args.pin_root))


def agrees(argv: list[str]) -> dict[str, object] | None:
    """The fast path's request for argv, checked against the full route's: the same bytes on
    the wire, or a decline."""
    fast = fast_apply.request(argv)
    if fast is not None:
        full = full_route_request(argv)
        assert full is not None, argv
        assert control.encode(fast) == control.encode(full), argv
    return fast


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


ACCEPTED = [
    ["apply", "x.o"],
    ["apply", "dir/x.o", "--json"],
    ["apply", "--force", "x.o", "--offload", "--replace-foreign", "--dry-run"],
    ["apply", "x.o", "--no-live-update", "--force", "--force"],
    ["apply", "x.o", "--expect-hash", "ab12", "--expect-hash=cd34"],
    ["apply", "x.o", "--keep-access", "10.1.1.1:22", "--keep-access=10.2.2.2:2222"],
    ["apply", "--pin-root", "/sys/fs/bpf/a", "x.o", "--pin-root=/sys/fs/bpf/b"],
    ["apply", "x.o", "--pin-root", ""],
    ["apply", "x.o", "--pin-root="],
    ["apply", "x.o", "--expect-hash=-dash", "--keep-access=a=b"],
    ["apply", ""],
    ["apply", "/abs/../x.o", "--keep-access", "x y", "--expect-hash", '\u00e9\t"q"'],
    ["apply", "apply"],
]

DECLINED = [
    [],
    ["apply"],
    ["status"],
    ["--version"],
    ["--version", "apply", "x.o"],
    ["apply", "x.o", "y.o"],
    ["apply", "x.o", "--no-daemon"],
    ["apply", "x.o", "-h"],
    ["apply", "x.o", "--help"],
    ["apply", "--", "x.o"],
    ["apply", "-", "x.o"],
    ["apply", "x.o", "--forc"],
    ["apply", "x.o", "--pin", "/r"],
    ["apply", "x.o", "--force=yes"],
    ["apply", "x.o", "--pin-root"],
    ["apply", "x.o", "--pin-root", "-r"],
    ["apply", "x.o", "--pin-root", "--force"],
    ["apply", "x.o", "--keep-access", "-1"],
    ["apply", "-x y"],
    ["apply", "x.o", "--version"],
]


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_the_fast_path_reads_these_as_the_full_parser_does(env: dict[str, str]) -> None:
    with environment(env):
        for argv in ACCEPTED:
            fast = agrees(argv)
            assert fast is not None, argv
            assert fast["ssh_connection"] == env.get("SSH_CONNECTION")
        for argv in DECLINED:
            assert fast_apply.request(argv) is None, argv


TOKENS = st.one_of(
    st.sampled_from(
        [
            *fast_apply._SWITCHES,
            *fast_apply._VALUED,
            "--no-daemon",
            "--forc",
            "--pin",
            "--keep",
            "--json=1",
            "-h",
            "--help",
            "--version",
            "--",
            "-",
            "-1",
            "apply",
            "x.o",
            "",
        ]
    ),
    st.builds(lambda f, v: f"{f}={v}", st.sampled_from(fast_apply._VALUED), st.text(max_size=8)),
    st.text(max_size=8),
    st.text(max_size=8).map(lambda t: "-" + t),
)


@settings(max_examples=600, deadline=None)
@given(
    argv=st.one_of(
        st.lists(TOKENS, max_size=8).map(lambda rest: ["apply", *rest]),
        st.lists(TOKENS, max_size=6),
    ),
    env=st.sampled_from(ENVIRONMENTS),
)
def test_the_fast_path_declines_or_sends_the_full_routes_request(
    argv: list[str], env: dict[str, str]
) -> None:
    # argparse's usage errors: not this test's output
    with environment(env), contextlib.redirect_stderr(io.StringIO()):
        agrees(argv)


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=20,
)


@given(message=st.dictionaries(st.text(), JSON_VALUES, max_size=6))
def test_encode_writes_what_json_dumps_writes(message: dict[str, object]) -> None:
    expected = json.dumps(message, separators=(",", ":")).encode() + b"\n"
    assert control.encode(message) == expected


# any text, and short runs of what JSON escapes or strips
STRINGS = st.text() | st.text(' \t\r\n\\"\x00\x7f\u00e9\u2028\ud800', max_size=6)


def canonical(code: object, stdout: object, stderr: object) -> str:
    return json.dumps({"code": code, "stdout": stdout, "stderr": stderr}, separators=(",", ":"))


@given(
    line=st.one_of(
        st.builds(
            canonical,
            st.integers() | st.booleans() | st.none() | st.floats(allow_nan=False),
            STRINGS | st.integers(),
            STRINGS,
        ).map(lambda text: text.encode()),
        # raw UTF-8 (and UTF-8 coded surrogates, which only json.loads accepts)
        st.builds(
            lambda code, out, err: json.dumps(
                {"code": code, "stdout": out, "stderr": err}, ensure_ascii=False
            ).encode("utf-8", "surrogatepass"),
            st.integers(),
            STRINGS,
            STRINGS,
        ),
        st.builds(
            lambda text, cut, junk: text.encode()[:cut] + junk + text.encode()[cut:],
            st.builds(canonical, st.integers(), STRINGS, STRINGS),
            st.integers(0, 60),
            st.binary(max_size=3),
        ),
        st.binary(max_size=40).map(lambda b: b'{"code":' + b),
        st.binary(max_size=40),
    )
)
def test_decode_reads_what_json_loads_reads(line: bytes) -> None:
    try:
        expected = json.loads(line)
    except ValueError:
        expected = None
    if not isinstance(expected, dict):
        with pytest.raises(ValueError):
            control.decode(line)
        return
    decoded = control.decode(line)
    assert decoded == expected and list(decoded) == list(expected)
    assert [type(v) for v in decoded.values()] == [type(v) for v in expected.values()]


# lines near the reply's own shape: read without json (True) or left to it (False)
NEAR_MISSES = [
    (b'{"code":0,"stdout":"","stderr":""}', True),
    (b'{"code":-12,"stdout":" a\\n\\u00e9\\"","stderr":"\\ud83d\\ude00 "}', True),
    (b'{"code":-0,"stdout":"","stderr":""}', True),
    (b'{"code":01,"stdout":"","stderr":""}', False),
    (b'{"code":-,"stdout":"","stderr":""}', False),
    (b'{"code":1.5,"stdout":"","stderr":""}', False),
    (b'{"code":1e3,"stdout":"","stderr":""}', False),
    (b'{"code":' + b"9" * 19 + b',"stdout":"","stderr":""}', False),
    (b'{"code":0,"stdout":"","stderr":""} ', False),
    (b'{"code":0,"stdout":"","stderr":"","code":1}', False),
    (b'{"code":0,"stdout":"","stderr":""}}', False),
    (b'{"code":0,"stdout":"\x01","stderr":""}', False),
    (b'{"code":0,"stdout":"\\x","stderr":""}', False),
    (b'{"code":0,"stdout":"\xc3\xa9","stderr":""}', True),
    (b'{"code":0,"stdout":"\xed\xa0\x80","stderr":""}', False),
    (b'{"code":0,"stdout":"","stderr":"', False),
    (b'{"code":0 ,"stdout":"","stderr":""}', False),
    (b'{"code":\xd9\xa1,"stdout":"","stderr":""}', False),
]


@pytest.mark.parametrize(("line", "own_shape"), NEAR_MISSES)
def test_decode_reads_near_misses_as_json_loads_does(line: bytes, own_shape: bool) -> None:
    assert (control._reply(line) is not None) == own_shape
    try:
        expected = json.loads(line)
    except ValueError:
        with pytest.raises(ValueError):
            control.decode(line)
        return
    decoded = control.decode(line)
    assert decoded == expected
    assert [type(v) for v in decoded.values()] == [type(v) for v in expected.values()]


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
    (None, 2, "", CLOSED),
    (b"nonsense\n", 2, "", INVALID),
    (b"[1, 2]\n", 2, "", INVALID),
    (b'{"code":0,"stdout":"\x01","stderr":""}\n', 2, "", INVALID),
]


@pytest.mark.parametrize(("answer", "code", "stdout", "stderr"), REPLIES)
def test_the_fast_path_prints_the_reply_or_the_full_routes_error(
    control_dir: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    answer: bytes | None,
    code: int,
    stdout: str,
    stderr: str,
) -> None:
    root = str(control_dir / "pins")
    path = control.socket_path(root)
    expected_err = lost(path, stderr) if stderr in (CLOSED, INVALID) else stderr
    argv = ["apply", "p.o", "--pin-root", root, "--keep-access", "10.1.1.1:22"]
    # the full route, as before: argparse, cmd_apply, control.ask
    with stand_in(root, [answer]) as full_requests:
        assert (
            dispatch_module.dispatch(
                "fw-load", "", "fwc.loader", cli.COMMANDS, (LoaderError,), argv
            )
            == code
        )
    assert capsys.readouterr() == (stdout, expected_err)

    def no_fallback(*args: object) -> int:
        raise AssertionError("the fast path fell back")

    monkeypatch.setattr(dispatch_module, "dispatch", no_fallback)
    with stand_in(root, [answer]) as fast_requests:
        assert cli.main(argv) == code
    assert capsys.readouterr() == (stdout, expected_err)
    assert fast_requests == full_requests and len(fast_requests) == 1


class Fallback:
    """Stands in for dispatch: records the argv it got."""

    def __init__(self) -> None:
        self.calls: list[list[str]] = []

    def __call__(self, *args: object) -> int:
        argv = args[-1]
        assert isinstance(argv, list)
        self.calls.append(argv)
        return 42


@pytest.mark.parametrize("listener", ["none", "stale", "declined argv"])
def test_no_daemon_or_an_unread_command_line_goes_to_the_full_route(
    control_dir: Path, monkeypatch: pytest.MonkeyPatch, listener: str
) -> None:
    root = str(control_dir / "pins")
    fallback = Fallback()
    monkeypatch.setattr(dispatch_module, "dispatch", fallback)
    argv = ["apply", "p.o", "--pin-root", root]
    if listener == "stale":
        dead = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        dead.bind(control.socket_path(root))
        dead.close()
    if listener == "declined argv":
        argv.append("--no-daemon")
        with stand_in(root, [control.encode({"code": 0})]) as seen:
            assert cli.main(argv) == 42
        assert seen == []
    else:
        assert cli.main(argv) == 42
    assert fallback.calls == [argv]


class RefusingSocket:
    """A socket whose connect fails as a 0600 socket does for a user."""

    def __init__(self, *args: object) -> None:
        pass

    def connect(self, path: str) -> None:
        raise PermissionError(13, "Permission denied")

    def close(self) -> None:
        pass


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
        monkeypatch.setattr(control, "_socket", fake)
    else:

        def interrupted(root: str, request: object) -> None:
            raise KeyboardInterrupt

        monkeypatch.setattr(control, "ask", interrupted)
    assert cli.main(["apply", "p.o", "--pin-root", root]) == code
    assert capsys.readouterr() == ("", stderr.format(path=control.socket_path(root)))
