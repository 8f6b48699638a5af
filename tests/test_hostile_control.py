"""The control socket under attack: slow and oversized requests, an impostor server, a socket
directory someone else controls; and `fw-load run` with a bad --metrics-addr."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from fwc.loader.daemon import control
from fwc.loader.daemon.server import READ_TIMEOUT, ControlServer
from fwc.loader.errors import LoaderError
from tests.loader_netns import veth_pair
from tests.test_control import daemon, served, socket_in
from tests.test_live_update import FIRST, SECOND, compile_tables


def _echo(message: dict[str, object]) -> dict[str, object]:
    return {"code": 0, "stdout": f"{message['command']}\n", "stderr": ""}


def _half_request(path: str) -> socket.socket:
    idle = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    idle.connect(path)
    idle.sendall(b'{"command": "ap')
    return idle


def _send_huge(path: str, size: int) -> bytes:
    """`size` bytes without a newline; what the server answers (b"" when it just closed)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
        conn.connect(path)
        conn.settimeout(10)
        block = b"x" * 65536
        try:
            for _ in range(size // len(block)):
                conn.sendall(block)
        except OSError:
            pass  # the server stopped reading and closed: refused
        try:
            return control.read_line(conn)
        except OSError:
            return b""


def test_a_slow_client_does_not_hold_up_a_request_and_close_completes(control_dir: Path) -> None:
    root = str(control_dir / "pins")
    with ControlServer(root, _echo) as server:
        idles = [_half_request(server.path) for _ in range(3)]
        start = time.monotonic()
        assert control.ask(root, {"command": "apply"}) == {
            "code": 0,
            "stdout": "apply\n",
            "stderr": "",
        }
        assert time.monotonic() - start < 1.0
        start = time.monotonic()
    # close() waited for the idle readers only up to their timeout
    assert time.monotonic() - start < READ_TIMEOUT + 2
    for idle in idles:
        idle.close()


def test_a_request_past_the_size_cap_is_refused(control_dir: Path) -> None:
    root = str(control_dir / "pins")
    with ControlServer(root, _echo) as server:
        reply = _send_huge(server.path, 2 << 20)
        assert reply == b"" or b"longer than 1048576 bytes" in reply
        assert control.ask(root, {"command": "apply"}) is not None


def test_a_socket_directory_someone_else_controls_is_refused(tmp_path: Path) -> None:
    real = tmp_path / "real"
    real.mkdir(mode=0o700)
    link = tmp_path / "link"
    link.symlink_to(real)
    with pytest.raises(LoaderError, match="is a symlink"):
        control.check_dir(str(link))
    os.chmod(real, 0o777)
    with pytest.raises(LoaderError, match="writable by group or others"):
        control.check_dir(str(real))
    os.chmod(real, 0o700)
    os.chown(real, 65534, 65534)
    with pytest.raises(LoaderError, match="owned by uid 65534"):
        control.check_dir(str(real))
    os.chown(real, 0, 0)
    control.check_dir(str(real))
    control.check_dir(str(tmp_path / "missing"))


IMPOSTOR = """
import os, socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.bind(sys.argv[1])
os.chmod(sys.argv[1], 0o666)
os.setgid(65534)
os.setuid(65534)
s.listen(1)  # the peer credentials a client sees are those of listen()
print("ready", flush=True)
c, _ = s.accept()
c.recv(65536)
c.sendall(b'{"code": 0, "stdout": "owned\\\\n", "stderr": ""}\\n')
"""


def test_a_server_of_another_uid_is_not_trusted(control_dir: Path) -> None:
    root = str(control_dir / "pins")
    path = control.socket_path(root)
    proc = subprocess.Popen(
        [sys.executable, "-c", IMPOSTOR, path], stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        with pytest.raises(LoaderError, match="served by uid 65534, not root"):
            control.ask(root, {"command": "apply"})
    finally:
        proc.kill()
        proc.wait(timeout=10)


def _rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


@pytest.mark.kernel
@pytest.mark.netns
def test_the_daemon_under_a_hostile_client(tmp_path: Path) -> None:
    first, second = compile_tables(FIRST, tmp_path), compile_tables(SECOND, tmp_path)
    log = tmp_path / "daemon.log"
    with veth_pair(subnet=11) as pair, daemon(pair, first, log) as proc:
        path = socket_in(pair)
        idle = _half_request(path)
        before = _rss_kib(proc.pid)
        for _ in range(3):
            _send_huge(path, 2 << 20)
        assert _rss_kib(proc.pid) - before < 16 * 1024
        start = time.monotonic()
        done = pair.fwload("apply", str(second))
        assert done.returncode == 0, done.stderr
        assert served(log) == 1
        assert time.monotonic() - start < 10
        second_idle = _half_request(path)
        start = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=READ_TIMEOUT + 5)
        assert time.monotonic() - start < READ_TIMEOUT + 3
        idle.close()
        second_idle.close()
    assert proc.returncode == 0


@pytest.mark.kernel
@pytest.mark.netns
@pytest.mark.parametrize("addr", ["127.0.0.1:99999", "127.0.0.1", "no-such-host.invalid:9469"])
def test_a_bad_metrics_address_changes_nothing(tmp_path: Path, addr: str) -> None:
    first = compile_tables(FIRST, tmp_path)
    with veth_pair(subnet=12) as pair:
        result = pair.fwload("run", str(first), "--metrics-addr", addr)
        assert result.returncode == 2
        assert len(result.stderr.strip().splitlines()) == 1, result.stderr
        assert "--metrics-addr" in result.stderr
        assert pair.attached() == {}
        assert not pair.root.joinpath("live").exists()


@pytest.mark.kernel
@pytest.mark.netns
def test_a_metrics_port_in_use_changes_nothing(tmp_path: Path) -> None:
    first = compile_tables(FIRST, tmp_path)
    with veth_pair(subnet=12) as pair:
        holder = subprocess.Popen(
            pair.nsenter_a(
                sys.executable,
                "-c",
                "import socket,sys; s=socket.socket(); s.bind(('127.0.0.1', 9469)); s.listen();"
                " print('ready', flush=True); sys.stdin.read()",
            ),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            assert holder.stdout is not None and holder.stdout.readline().strip() == "ready"
            result = pair.fwload("run", str(first), "--metrics-addr", "127.0.0.1:9469")
        finally:
            holder.kill()
            holder.wait(timeout=10)
        assert result.returncode == 2
        assert "--metrics-addr 127.0.0.1:9469: Address already in use" in result.stderr
        assert len(result.stderr.strip().splitlines()) == 1
        assert pair.attached() == {}
