"""End to end with real connections: fw-load applies `state: [established, related]` then deny on
a server namespace; what it opens gets its replies, what nobody asked for is dropped, and ICMP
errors pass only about a connection conntrack knows."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.loader_netns import (
    ICMP_PING,
    Pair,
    background,
    compile_policy,
    sh,
    udp_delivered,
    veth_pair,
)

pytestmark = [pytest.mark.kernel, pytest.mark.netns]

POLICY = """
name: state-host
default_action: deny
rules:
  - {name: replies, priority: 10, action: allow, state: [established, related]}
"""

# b's side: a TCP and a UDP echo server on one port each
ECHO = """
import socket, sys, threading
tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
tcp.bind(("0.0.0.0", int(sys.argv[1])))
tcp.listen(8)
udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
udp.bind(("0.0.0.0", int(sys.argv[2])))
def serve_tcp():
    while True:
        c, _ = tcp.accept()
        c.sendall(c.recv(64).upper())
        c.close()
threading.Thread(target=serve_tcp, daemon=True).start()
print("ready", flush=True)
while True:
    data, peer = udp.recvfrom(64)
    udp.sendto(data.upper(), peer)
"""

# a's side: open a connection to b, say what came back
CLIENT = """
import socket, sys
kind, host, port, sport = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
family = socket.SOCK_STREAM if kind == "tcp" else socket.SOCK_DGRAM
s = socket.socket(socket.AF_INET, family)
s.settimeout(1.5)
if sport:
    s.bind(("0.0.0.0", sport))
try:
    s.connect((host, port))
    s.send(b"hello")
    print(s.recv(64).decode())
except ConnectionRefusedError:
    print("refused")
except OSError:
    print("timeout")
"""

# from b to a: an ICMPv4 port unreachable about a UDP datagram (src, dst, sport, dport)
ICMP_ERROR = """
import socket, struct, sys
to, src, dst = sys.argv[1:4]
sport, dport = int(sys.argv[4]), int(sys.argv[5])
def checksum(data):
    total = sum(struct.unpack("!%dH" % (len(data) // 2), data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF
inner = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 28, 1, 0, 64, 17, 0,
                    socket.inet_aton(src), socket.inet_aton(dst))
inner = inner[:10] + struct.pack("!H", checksum(inner)) + inner[12:]
inner += struct.pack("!HHHH", sport, dport, 8, 0)
icmp = struct.pack("!BBHI", 3, 3, 0, 0) + inner
icmp = icmp[:2] + struct.pack("!H", checksum(icmp)) + icmp[4:]
s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
s.sendto(icmp, (to, 0))
"""

# in a: whether an ICMP error about a datagram to DPORT arrives (after XDP) within the timeout
ICMP_SEEN = """
import socket, struct, sys, time
dport, wait = int(sys.argv[1]), float(sys.argv[2])
s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
s.settimeout(0.2)
print("ready", flush=True)
deadline = time.monotonic() + wait
while time.monotonic() < deadline:
    try:
        data = s.recv(2048)
    except socket.timeout:
        continue
    icmp = data[(data[0] & 15) * 4:]
    inner = icmp[8:]
    if icmp[0] == 3 and len(inner) >= 24:
        ports = inner[(inner[0] & 15) * 4:]
        if struct.unpack("!H", ports[2:4])[0] == dport:
            print("seen", flush=True)
            sys.exit(0)
print("none", flush=True)
"""

TCP_PORT, UDP_PORT, CLOSED_PORT = 7001, 7002, 7003


@pytest.fixture(params=["constants", "tables"])
def strategy(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@contextmanager
def server_side(tmp_path: Path, strategy: str) -> Iterator[Pair]:
    """The pair with fw-load's stateful host policy on a, and b's echo servers running."""
    artifact = compile_policy(POLICY, tmp_path, strategy=strategy)
    with veth_pair(subnet=25) as pair:
        applied = pair.fwload("apply", str(artifact))
        assert applied.returncode == 0, applied.stderr
        echo = pair.exec_b(sys.executable, "-c", ECHO, str(TCP_PORT), str(UDP_PORT))
        with background(echo):
            yield pair


def client(pair: Pair, kind: str, port: int, sport: int = 0) -> str:
    cmd = pair.exec_a(sys.executable, "-c", CLIENT, kind, pair.ip_b, str(port), str(sport))
    return sh(*cmd).stdout.strip()


def icmp_error_arrives(pair: Pair, sport: int, dport: int) -> bool:
    """Send from b an ICMP port unreachable about a datagram a:sport -> b:dport; whether a's
    stack receives it."""
    listen = pair.exec_a(sys.executable, "-c", ICMP_SEEN, str(dport), "1.5")
    with background(listen) as seen:
        args = (pair.ip_a, pair.ip_a, pair.ip_b, str(sport), str(dport))
        sh(*pair.exec_b(sys.executable, "-c", ICMP_ERROR, *args))
        out, _ = seen.communicate(timeout=30)
    return out.strip().splitlines()[-1] == "seen"


def test_connections_from_inside_get_their_replies(tmp_path: Path, strategy: str) -> None:
    with server_side(tmp_path, strategy) as pair:
        assert client(pair, "tcp", TCP_PORT) == "HELLO"
        assert client(pair, "udp", UDP_PORT) == "HELLO"
        # the kernel's own ICMP error about a's datagram to a closed port: related, it passes
        # and the connected socket learns of it
        assert client(pair, "udp", CLOSED_PORT) == "refused"


def test_what_nobody_asked_for_is_dropped(tmp_path: Path, strategy: str) -> None:
    with server_side(tmp_path, strategy) as pair:
        # new connections from b: a's listeners never see them, and no RST or ICMP comes back
        assert udp_delivered(pair, 7004, 5) == 0
        out = sh(*pair.exec_b(sys.executable, "-c", CLIENT, "tcp", pair.ip_a, "22", "0"))
        assert out.stdout.strip() == "timeout"
        # ICMP queries are untracked: a rule with state never matches the echo reply to a's
        # own ping (netfilter would call it established)
        ping = pair.exec_a(sys.executable, "-c", ICMP_PING, pair.ip_b, "1")
        assert sh(*ping, check=False).returncode == 1
        # and the replies of a's connections still pass meanwhile
        assert client(pair, "udp", UDP_PORT) == "HELLO"


def test_icmp_errors_pass_only_about_a_real_connection(tmp_path: Path, strategy: str) -> None:
    with server_side(tmp_path, strategy) as pair:
        sport = 40123
        assert client(pair, "udp", UDP_PORT, sport) == "HELLO"
        # about the flow a opened: related
        assert icmp_error_arrives(pair, sport, UDP_PORT)
        # about a flow that never was: invalid, and no rule allows it
        assert not icmp_error_arrives(pair, sport + 1, UDP_PORT + 100)
