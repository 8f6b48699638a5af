"""`fw-load apply` through `fw-load run`'s control socket: the same reports, errors and exit
codes as a local apply, live updates and program swaps, stale sockets, and the daemon's timing."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from fwc.loader import cli
from fwc.loader.apply.transaction import ApplyReport
from fwc.loader.daemon import control
from fwc.loader.daemon.loop import Timing
from fwc.loader.daemon.server import ControlBusy, ControlServer
from tests.control_stand_in import stand_in
from tests.loader_netns import FWLOAD, Pair, sh, udp_delivered, unique, veth_pair, wait_until
from tests.test_live_update import FIRST, SECOND, XDP_DROP, XDP_PASS, compile_tables, verdict_of

# another policy name, another strategy: only a program swap can apply it
SWAPPED = """
name: swapped
default_action: allow
rules:
  - {name: deny_5353, priority: 10, action: deny, protocol: udp, destination_ports: [5353]}
  - {name: deny_ssh, priority: 20, action: deny, protocol: tcp, destination_ports: [22]}
"""

DENY_SSH = SECOND.replace(
    "  - {name: deny_flow,",
    "  - {name: deny_ssh, priority: 25, action: deny, protocol: tcp, destination_ports: [22]}\n"
    "  - {name: deny_flow,",
)


@contextmanager
def daemon(
    pair: Pair, artifact: Path, log: Path, metrics: str = "off"
) -> Iterator[subprocess.Popen[bytes]]:
    """`fw-load run` in namespace a, its stderr in `log`; stopped with SIGTERM at the end."""
    env = pair.fwload_env()
    cmd = pair.nsenter_a(FWLOAD, "run", str(artifact))
    with log.open("wb") as out:
        proc = subprocess.Popen([*cmd, "--metrics-addr", metrics], stderr=out, env=env)
    path = socket_in(pair)
    try:
        assert wait_until(lambda: "control socket" in log.read_text(), 30), log.read_text()
        yield proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
        # a daemon killed by the test leaves its socket file behind, as SIGKILL would
        if proc.returncode != 0 and os.path.exists(path):
            os.unlink(path)


def served(log: Path) -> int:
    """How many apply requests the daemon has answered (its log says one line each)."""
    return sum(" on request" in line or "refused" in line for line in log.read_text().splitlines())


def scrape(pair: Pair, addr: str) -> str:
    """The daemon's metrics page, fetched from inside namespace a."""
    code = "import sys, urllib.request; print(urllib.request.urlopen(sys.argv[1]).read().decode())"
    return sh(*pair.nsenter_a(sys.executable, "-c", code, f"http://{addr}/")).stdout


def socket_in(pair: Pair) -> str:
    """The daemon's socket path as a client in namespace a computes it."""
    code = (
        "import sys; from fwc.loader.daemon.control import socket_path; "
        "print(socket_path(sys.argv[1]))"
    )
    return sh(*pair.nsenter_a(sys.executable, "-c", code, str(pair.root))).stdout.strip()


@pytest.mark.kernel
@pytest.mark.netns
def test_apply_through_the_daemon_updates_live_then_swaps_and_the_daemon_follows(
    tmp_path: Path,
) -> None:
    first, second = compile_tables(FIRST, tmp_path), compile_tables(SECOND, tmp_path)
    swapped = compile_tables(SWAPPED, tmp_path, strategy="constants")
    log = tmp_path / "daemon.log"
    # the metrics server listens on the loopback of namespace a
    metrics = f"127.0.0.1:{20000 + (os.getpid() + 7) % 20000}"
    with veth_pair(subnet=8) as pair, daemon(pair, first, log, metrics) as proc:
        assert 'fwc_policy_info{dry_run="false",policy="live"' in scrape(pair, metrics)
        assert verdict_of(pair, "live", 5354) == XDP_PASS
        path = socket_in(pair)
        mode = os.stat(path).st_mode
        assert (mode & 0o777, os.stat(os.path.dirname(path)).st_mode & 0o777) == (0o600, 0o700)

        done = pair.fwload("apply", str(second), "--json")
        assert (done.returncode, done.stderr) == (0, "")
        report = json.loads(done.stdout)
        assert report["update"]["summary"] == "live-update: generation 0 -> 1"
        assert served(log) == 1
        # the daemon says how long it took, from the request received to the flip
        assert re.search(
            r"on request; [0-9.]+ ms to the flip, [0-9.]+ ms to the reply", log.read_text()
        )
        assert verdict_of(pair, "live", 5354) == XDP_DROP
        assert udp_delivered(pair, 5354, 10) == 0
        assert udp_delivered(pair, 5353, 10) == 10

        # the text report, and the same report as a local apply prints it
        text = pair.fwload("apply", str(first))
        assert text.returncode == 0 and served(log) == 2
        local = pair.fwload("apply", str(first), "--no-daemon")
        assert local.returncode == 0 and served(log) == 2
        assert text.stdout.splitlines()[0] == local.stdout.splitlines()[0]
        assert text.stdout.splitlines()[1] == "  live-update: generation 1 -> 0"
        assert local.stdout.splitlines()[1] == "  live-update: generation 0 -> 1"
        assert verdict_of(pair, "live", 5354) == XDP_PASS

        # another policy: program swap, through the daemon, which then follows it
        done = pair.fwload("apply", str(swapped), "--json")
        assert done.returncode == 0, done.stderr
        assert json.loads(done.stdout)["update"]["path"] == "program-swap"
        assert served(log) == 3
        assert re.search(
            r"\(program swap[^\n]*on request; [0-9.]+ ms to the reply\n", log.read_text()
        )
        assert pair.attached() == {pair.if_a: "swapped"}
        assert udp_delivered(pair, 5353, 10) == 0
        # the metrics follow it too: counters, attachment and identity of the new name
        scraped = scrape(pair, metrics)
        assert (
            'fwc_rule_packets_total{action="deny",policy="swapped",rule="deny_5353"} 10.0'
            in scraped
        )
        assert f'fwc_interface_attached{{interface="{pair.if_a}",mode=' in scraped
        assert 'policy="live"' not in scraped
        extra, peer = unique("cx"), unique("cx")
        sh("ip", "-n", pair.ns_a, "link", "add", "name", extra, "type", "veth", "peer", peer)
        assert wait_until(lambda: pair.attached().get(extra) == "swapped", 15), log.read_text()

        # one daemon per pin root and namespace
        second_daemon = pair.fwload("run", str(first), "--metrics-addr", "off")
        assert second_daemon.returncode == 2
        assert "another fw-load run already serves" in second_daemon.stderr
        assert proc.poll() is None
    assert proc.returncode == 0
    assert not os.path.exists(path), "the daemon removes its socket on exit"


@pytest.mark.kernel
@pytest.mark.netns
def test_errors_through_the_daemon_are_the_local_ones_and_change_nothing(tmp_path: Path) -> None:
    first, deny_ssh = compile_tables(FIRST, tmp_path), compile_tables(DENY_SSH, tmp_path)
    garbage = tmp_path / "garbage.o"
    garbage.write_bytes(b"\x7fELF not really")
    missing = tmp_path / "missing.o"
    log = tmp_path / "daemon.log"
    with veth_pair(subnet=9) as pair, daemon(pair, first, log) as proc:
        ssh = {"SSH_CONNECTION": f"{pair.ip_b} 40000 {pair.ip_a} 22"}
        cases = [
            ([str(missing)], {}, 2),
            ([str(garbage)], {}, 2),
            ([str(first), "--expect-hash", "0" * 64], {}, 2),
            ([str(deny_ssh)], ssh, 1),  # the client's own session is protected
        ]
        for count, (argv, env, code) in enumerate(cases, start=1):
            remote = pair.fwload("apply", *argv, env=env)
            local = pair.fwload("apply", *argv, "--no-daemon", env=env)
            assert served(log) == count, log.read_text()
            assert (remote.returncode, remote.stdout) == (code, "")
            assert remote.stderr == local.stderr, argv
            assert remote.stderr.startswith("fw-load apply: ") and "Traceback" not in remote.stderr
            assert len(remote.stderr.splitlines()) == 1
        assert proc.poll() is None
        assert verdict_of(pair, "live", 5354) == XDP_PASS
        assert verdict_of(pair, "live", 22, "tcp") == XDP_PASS
        forced = pair.fwload("apply", str(deny_ssh), "--force", env=ssh)
        assert forced.returncode == 0 and served(log) == len(cases) + 1
        assert verdict_of(pair, "live", 22, "tcp") == XDP_DROP


@pytest.mark.kernel
@pytest.mark.netns
def test_a_stale_socket_means_no_daemon(tmp_path: Path) -> None:
    first, second = compile_tables(FIRST, tmp_path), compile_tables(SECOND, tmp_path)
    log = tmp_path / "daemon.log"
    with veth_pair(subnet=10) as pair:
        path = socket_in(pair)
        os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
        dead = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        dead.bind(path)
        dead.close()  # the file stays, nothing listens: a daemon killed with SIGKILL
        try:
            done = pair.fwload("apply", str(first), "--json")
            assert done.returncode == 0, done.stderr
            with daemon(pair, first, log):
                done = pair.fwload("apply", str(second), "--json")
                assert done.returncode == 0, done.stderr
                assert served(log) == 1
            assert verdict_of(pair, "live", 5354) == XDP_DROP
        finally:
            if os.path.exists(path):
                os.unlink(path)


@pytest.mark.kernel
@pytest.mark.netns
def test_a_daemon_killed_mid_request_is_a_clear_error_and_the_old_policy_stays(
    tmp_path: Path,
) -> None:
    first, second = compile_tables(FIRST, tmp_path), compile_tables(SECOND, tmp_path)
    log = tmp_path / "daemon.log"
    with veth_pair(subnet=11) as pair, daemon(pair, first, log) as proc:
        # stopped, the daemon's socket still queues the connection and the request
        proc.send_signal(signal.SIGSTOP)
        cmd = pair.nsenter_a(FWLOAD, "apply", str(second))
        client = subprocess.Popen(
            cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=pair.fwload_env()
        )
        # time to start, connect and send (a few tens of ms): it then waits for the reply
        time.sleep(2)
        assert client.poll() is None
        proc.kill()
        out, err = client.communicate(timeout=30)
        assert client.returncode == 2 and out == b""
        message = err.decode()
        assert len(message.splitlines()) == 1 and "Traceback" not in message
        assert "did not answer" in message and "fw-load status" in message
        assert verdict_of(pair, "live", 5354) == XDP_PASS
        # the socket file outlives the daemon: the next command applies locally
        done = pair.fwload("apply", str(second))
        assert done.returncode == 0, done.stderr
        assert verdict_of(pair, "live", 5354) == XDP_DROP


def test_the_request_carries_the_options_and_the_session(
    control_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SSH_CONNECTION", "10.9.9.9 40000 10.0.0.1 22")
    monkeypatch.chdir(tmp_path)
    root = str(control_dir / "pins")
    seen: list[dict[str, object]] = []
    real_ask = control.ask

    def spy(root_arg: str, request: dict[str, object]) -> dict[str, object] | None:
        seen.append(request)
        return real_ask(root_arg, request)

    monkeypatch.setattr(control, "ask", spy)
    answer = control.encode({"code": 0, "stdout": "", "stderr": ""})
    with stand_in(root, [answer]):
        argv = ["apply", "p.o", "--pin-root", root, "--keep-access", "10.1.1.1:22", "--json"]
        assert cli.main([*argv, "--force", "--no-live-update"]) == 0
    (request,) = seen
    assert request["root"] == root and request["json"] is True
    assert request["ssh_connection"] == "10.9.9.9 40000 10.0.0.1 22"
    assert request["options"] == {
        "artifact": str(tmp_path / "p.o"),
        "expect_hash": None,
        "keep_access": ["10.1.1.1:22"],
        "force": True,
        "offload": False,
        "replace_foreign": False,
        "dry_run": False,
        "no_live_update": True,
    }


def test_socket_names_follow_the_pin_root_and_stay_short() -> None:
    short = control.socket_path("/sys/fs/bpf/fwc")
    assert short.startswith(control.CONTROL_DIR + "/sys-fs-bpf-fwc@")
    assert short.endswith(".sock")
    assert control.socket_path("/sys/fs/bpf/fwc/") == short
    long = control.socket_path("/sys/fs/bpf/" + "x" * 200)
    assert len(long.encode()) < 108
    assert long != control.socket_path("/sys/fs/bpf/" + "y" * 200)


def test_the_server_answers_replaces_a_stale_socket_and_refuses_a_second_one(
    control_dir: Path,
) -> None:
    root = str(control_dir / "pins")
    path = control.socket_path(root)
    dead = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    dead.bind(path)
    dead.close()
    assert control.ask(root, {"command": "apply"}) is None  # stale: no daemon
    calls: list[str] = []

    def handler(message: dict[str, object]) -> dict[str, object]:
        if message.get("boom"):
            raise ValueError("boom")
        return {"code": 0, "stdout": f"{message['command']}\n", "stderr": ""}

    with ControlServer(root, handler, lambda: calls.append("after")) as server:
        assert server.path == path and os.stat(path).st_mode & 0o777 == 0o600
        assert control.ask(root, {"command": "apply"}) == {
            "code": 0,
            "stdout": "apply\n",
            "stderr": "",
        }
        assert control.ask(root, {"boom": True}) == {
            "code": 2,
            "stdout": "",
            "stderr": "fw-load apply: the fw-load run daemon failed: boom\n",
        }
        with pytest.raises(ControlBusy, match="already serves"):
            ControlServer(root, handler)
    assert not os.path.exists(path)
    assert calls == ["after", "after"]


def report_flipped_at(flipped_at: int | None) -> ApplyReport:
    return ApplyReport("p", "0" * 64, 1, False, (), flipped_at=flipped_at)


@pytest.mark.parametrize(
    ("report", "expected", "said"),
    [
        (
            report_flipped_at(5_000_000),
            {"to_flip_ms": 4.0, "to_reply_ms": 9.0},
            "4.0 ms to the flip, 9.0 ms to the reply",
        ),
        (report_flipped_at(None), {"to_flip_ms": None, "to_reply_ms": 9.0}, "9.0 ms to the reply"),
        (None, {"to_flip_ms": None, "to_reply_ms": 9.0}, "9.0 ms to the reply"),
    ],
)
def test_the_daemon_times_a_request_from_its_arrival(
    report: ApplyReport | None, expected: dict[str, float | None], said: str
) -> None:
    timing = Timing.of(1_000_000, report, 10_000_000)
    assert (timing.as_dict(), timing.describe()) == (expected, said)
