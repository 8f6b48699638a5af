"""Helpers for fw-load's kernel tests: private network namespaces, veth pairs, pin roots,
compiled test policies, and small traffic generators run inside the namespaces."""

from __future__ import annotations

import itertools
import json
import os
import shutil
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

BIN = Path(sys.executable).parent
FWLOAD = str(BIN / "fw-load")
FWC = str(BIN / "fwc")
_counter = itertools.count()


def unique(prefix: str) -> str:
    """A name no other test (or test run) uses: prefix, pid and a counter; <= 15 chars."""
    return f"{prefix}{os.getpid() % 100000}{next(_counter)}"[:15]


def sh(*cmd: str, check: bool = True, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, check=check, capture_output=True, text=True, timeout=timeout)


@dataclass(frozen=True)
class Pair:
    """Two namespaces joined by a veth pair: `a` (where fw-load runs) and `b` (the peer)."""

    ns_a: str
    ns_b: str
    if_a: str
    if_b: str
    ip_a: str
    ip_b: str
    root: Path  # the test's own pin root

    def exec_a(self, *cmd: str) -> list[str]:
        return ["ip", "netns", "exec", self.ns_a, *cmd]

    def exec_b(self, *cmd: str) -> list[str]:
        return ["ip", "netns", "exec", self.ns_b, *cmd]

    def nsenter_a(self, *cmd: str) -> list[str]:
        """`cmd` run inside namespace a through nsenter, which keeps /sys/fs/bpf (ip netns
        exec remounts /sys and would hide it)."""
        return ["nsenter", f"--net=/run/netns/{self.ns_a}", *cmd]

    def fwload_env(self) -> dict[str, str]:
        """fw-load's environment in these tests: the test's own pin root, and no SSH session
        of whoever runs the tests (the lockout check would protect it)."""
        env = {k: v for k, v in os.environ.items() if k != "SSH_CONNECTION"}
        env["FWC_PIN_ROOT"] = str(self.root)
        return env

    def fwload(
        self, *args: str, env: dict[str, str] | None = None, check: bool = False
    ) -> subprocess.CompletedProcess[str]:
        """Run fw-load inside namespace a."""
        full = self.fwload_env()
        full.update(env or {})
        return subprocess.run(
            self.nsenter_a(FWLOAD, *args),
            capture_output=True,
            text=True,
            env=full,
            check=check,
            timeout=60,
        )

    def status(self) -> dict[str, Any]:
        out = self.fwload("status", "--json", check=True).stdout
        state: dict[str, Any] = json.loads(out)
        return state

    def attached(self) -> dict[str, str]:
        """interface -> policy, from `fw-load status --json`."""
        return {i["name"]: p["name"] for p in self.status()["policies"] for i in p["interfaces"]}

    def stats(self) -> dict[str, tuple[int, int]]:
        """counter slot name -> (packets, bytes) of the only policy, from `fw-load stats`."""
        out = json.loads(self.fwload("stats", "--json", check=True).stdout)
        (policy,) = out["policies"]
        return {c["name"]: (c["packets"], c["bytes"]) for c in policy["counters"]}


@contextmanager
def veth_pair(subnet: int = 1) -> Iterator[Pair]:
    """Namespaces a and b with a veth pair between them, both up, IPv4 10.<subnet>.x.1/.2."""
    tag = unique("")
    ns_a, ns_b = f"fwca{tag}", f"fwcb{tag}"
    if_a, if_b = f"va{tag}"[:15], f"vb{tag}"[:15]
    octet = int(tag) % 250
    ip_a, ip_b = f"10.{200 + subnet}.{octet}.1", f"10.{200 + subnet}.{octet}.2"
    root = Path("/sys/fs/bpf") / f"fwct{tag}"
    try:
        sh("ip", "netns", "add", ns_a)
        sh("ip", "netns", "add", ns_b)
        sh("ip", "-n", ns_a, "link", "add", "name", if_a, "type", "veth", "peer", "name", if_b)
        sh("ip", "-n", ns_a, "link", "set", if_b, "netns", ns_b)
        for ns, ifname, addr in ((ns_a, if_a, ip_a), (ns_b, if_b, ip_b)):
            sh("ip", "-n", ns, "addr", "add", f"{addr}/24", "dev", ifname)
            sh("ip", "-n", ns, "link", "set", ifname, "up")
            sh("ip", "-n", ns, "link", "set", "lo", "up")
        yield Pair(ns_a, ns_b, if_a, if_b, ip_a, ip_b, root)
    finally:
        sh("ip", "netns", "del", ns_a, check=False)
        sh("ip", "netns", "del", ns_b, check=False)
        shutil.rmtree(root, ignore_errors=True)


def compile_policy(
    text: str, out_dir: Path, dry_run: bool = False, strategy: str | None = None
) -> Path:
    """Compile a YAML policy with `fwc compile`; return the artifact."""
    source = out_dir / f"p{next(_counter)}.yaml"
    source.write_text(textwrap.dedent(text))
    artifact = source.with_suffix(".o")
    # lab policies, not the Rego invariants of a real site: the gate is tested on its own
    cmd = [FWC, "compile", str(source), "-o", str(artifact), "--no-gate"]
    cmd += ["--strategy", strategy] if strategy else []
    sh(*cmd, *(["--dry-run"] if dry_run else []), timeout=120)
    return artifact


def wait_until(predicate: Callable[[], bool], timeout: float = 10.0) -> bool:
    """Poll `predicate` until it holds or `timeout` seconds pass."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.1)
    return predicate()


UDP_RECEIVER = """
import socket, sys, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("0.0.0.0", int(sys.argv[1])))
s.settimeout(float(sys.argv[2]))
print("ready", flush=True)
seen = set()
try:
    while True:
        data, _ = s.recvfrom(2048)
        if data == b"end":
            break
        seen.add(int(data.split(b":")[0]))
except socket.timeout:
    pass
print(len(seen), flush=True)
"""

UDP_SENDER = """
import socket, sys, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
host, port, count, gap = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
for i in range(count):
    s.sendto(b"%d:fwc" % i, (host, port))
    if gap:
        time.sleep(gap)
"""

TCP_SERVER = """
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", int(sys.argv[1])))
s.listen(8)
s.settimeout(float(sys.argv[2]))
print("ready", flush=True)
try:
    while True:
        c, _ = s.accept()
        c.sendall(b"ok")
        c.close()
except socket.timeout:
    pass
"""

TCP_CLIENT = """
import socket, sys
try:
    c = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=float(sys.argv[3]))
    print(c.recv(2).decode())
except OSError:
    print("fail")
"""


@contextmanager
def background(cmd: list[str]) -> Iterator[subprocess.Popen[str]]:
    """A process that prints `ready` once it listens; killed at the end."""
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "ready"
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=10)


def udp_delivered(pair: Pair, port: int, count: int, gap: float = 0.0) -> int:
    """Send `count` datagrams from b to a:port; how many distinct ones arrived."""
    with background(pair.exec_a(sys.executable, "-c", UDP_RECEIVER, str(port), "1.0")) as receiver:
        sh(
            *pair.exec_b(
                sys.executable, "-c", UDP_SENDER, pair.ip_a, str(port), str(count), str(gap)
            )
        )
        out, _ = receiver.communicate(timeout=30)
    return int(out.strip().splitlines()[-1])


def tcp_connects(pair: Pair, port: int) -> bool:
    """Whether a TCP connect from b to a:port gets through (and the server answers)."""
    with background(pair.exec_a(sys.executable, "-c", TCP_SERVER, str(port), "3")):
        out = sh(*pair.exec_b(sys.executable, "-c", TCP_CLIENT, pair.ip_a, str(port), "1")).stdout
    return out.strip() == "ok"


ICMP_PING = """
import os, socket, struct, sys, time
s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
s.settimeout(float(sys.argv[2]))
ident = os.getpid() & 0xFFFF
body = struct.pack("!BBHHH", 8, 0, 0, ident, 1) + b"fwc-ping"
total = sum(struct.unpack("!%dH" % (len(body) // 2), body))
total = (total & 0xFFFF) + (total >> 16)
body = body[:2] + struct.pack("!H", ~total & 0xFFFF) + body[4:]
s.sendto(body, (sys.argv[1], 0))
deadline = time.monotonic() + float(sys.argv[2])
try:
    while time.monotonic() < deadline:
        data = s.recv(2048)
        icmp = data[(data[0] & 15) * 4:]
        if icmp[0] == 0 and struct.unpack("!H", icmp[4:6])[0] == ident:
            sys.exit(0)
except socket.timeout:
    pass
sys.exit(1)
"""


def pings(pair: Pair) -> bool:
    """Whether one ICMP echo from b to a gets an answer (ping itself may not be installed)."""
    cmd = pair.exec_b(sys.executable, "-c", ICMP_PING, pair.ip_a, "1")
    return sh(*cmd, check=False).returncode == 0
