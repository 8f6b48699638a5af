"""Loading a netfilter baseline into the receiver namespace, and reading its verdict per frame.

A verdict is read by sending one frame at a time: an nftables observer counts every IP
frame arriving on the receiver (`arrived`: netdev ingress, before any filter, plus what an
XDP program dropped) and every one that gets past the filter (`passed`: by default IP
prerouting at priority -200, after the raw table and netdev ingress; a caller whose filter
sits later gives its own observer). A frame that arrived and did not pass was dropped.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence

from baselines import TABLE, Baseline
from netns import RX_DEV, TX_DEV, Pair, sh, xdp_drops

from fwc.compiler.policy.ir import Family

_EMPTY_RAW = "*raw\n:PREROUTING ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\nCOMMIT\n"
_RESTORE = {Family.IPV4: "iptables-legacy-restore", Family.IPV6: "ip6tables-legacy-restore"}


@contextlib.contextmanager
def baseline_loaded(pair: Pair, baseline: Baseline) -> Iterator[float]:
    """`baseline` in the receiver namespace until the block ends; yields its load time (s)."""
    start = time.monotonic()
    try:
        if baseline.ipset:
            pair.rx_sh("ipset", "restore", "-exist", input=baseline.ipset)
        for family, text in baseline.iptables:
            pair.rx_sh(_RESTORE[family], input=text)
        if baseline.nft:
            pair.rx_sh("nft", "-f", "-", input=baseline.nft)
        loaded = time.monotonic() - start
        yield loaded
    finally:
        if baseline.iptables:
            for family in _RESTORE:
                pair.rx_sh(_RESTORE[family], input=_EMPTY_RAW, check=False)
        if baseline.ipset:
            pair.rx_sh("ipset", "destroy", check=False)
        if baseline.nft:
            pair.rx_sh("nft", "delete", "table", "netdev", TABLE, check=False)


def observer(passed_chain: str) -> str:
    """An nftables observer: `arrived` at netdev ingress, `passed` by `passed_chain` (the body
    of a chain in table inet fwc_obs). Loading it again starts it afresh."""
    return f"""
table netdev fwc_obs_in
delete table netdev fwc_obs_in
table inet fwc_obs
delete table inet fwc_obs
table netdev fwc_obs_in {{
	chain arrive {{
		type filter hook ingress device "{RX_DEV}" priority -500; policy accept;
		meta protocol {{ ip, ip6 }} counter name arrived
	}}
	counter arrived {{ }}
}}
table inet fwc_obs {{
	counter passed {{ }}
	chain after {{
		{passed_chain}
	}}
}}
"""


PREROUTING = observer(
    f'type filter hook prerouting priority -200; policy accept;\n\t\tiifname "{RX_DEV}" '
    "counter name passed"
)

_SENDER = """
import socket, sys
frames = [bytes.fromhex(line) for line in sys.argv[2].split(",")]
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
s.bind((sys.argv[1], 0))
for line in sys.stdin:
    s.send(frames[int(line)])
    print("sent", flush=True)
"""


def _counters(pair: Pair) -> dict[str, int]:
    out = {"arrived": xdp_drops(pair), "passed": 0}
    for item in json.loads(pair.rx_sh("nft", "-j", "list", "counters"))["nftables"]:
        counter = item.get("counter")
        if counter and counter.get("table") in ("fwc_obs_in", "fwc_obs"):
            out[counter["name"]] += counter["packets"]
    return out


def passed_frames(pair: Pair, frames: Sequence[bytes], watch: str = PREROUTING) -> list[bool]:
    """Whether each frame got through the receiver's filter (True) or was dropped; `watch` is
    the observer (`observer()`)."""
    pair.rx_sh("nft", "-f", "-", input=watch)
    sender = subprocess.Popen(
        [
            "ip",
            "netns",
            "exec",
            pair.tx,
            sys.executable,
            "-c",
            _SENDER,
            TX_DEV,
            ",".join(f.hex() for f in frames),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert sender.stdin is not None and sender.stdout is not None
    try:
        out = []
        before = _counters(pair)
        for i in range(len(frames)):
            sender.stdin.write(f"{i}\n")
            sender.stdin.flush()
            if sender.stdout.readline().strip() != "sent":
                raise RuntimeError("the frame sender stopped")
            now = _counters(pair)
            deadline = time.monotonic() + 2
            while now["arrived"] == before["arrived"] and time.monotonic() < deadline:
                time.sleep(0.01)
                now = _counters(pair)
            if now["arrived"] != before["arrived"] + 1:
                raise RuntimeError(f"frame {i}: {now['arrived'] - before['arrived']} arrivals")
            if now["passed"] == before["passed"]:
                time.sleep(0.02)  # a frame still between the two hooks would count late
                now = _counters(pair)
            out.append(now["passed"] > before["passed"])
            before = now
        return out
    finally:
        sender.stdin.close()
        sender.wait(timeout=10)
        sh(
            "ip",
            "netns",
            "exec",
            pair.rx,
            "nft",
            "delete",
            "table",
            "netdev",
            "fwc_obs_in",
            check=False,
        )
        sh("ip", "netns", "exec", pair.rx, "nft", "delete", "table", "inet", "fwc_obs", check=False)
