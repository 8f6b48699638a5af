"""Counters read back after BPF_PROG_TEST_RUN: the right slot, packets and bytes, dry-run too."""

from __future__ import annotations

from pathlib import Path

import pytest

from fwc.compiler.backend.build import compile_policy
from fwc.compiler.oracle import frames as fr
from fwc.loader.kernel.program import LoadedProgram
from tests.compile_helpers import policy_of

pytestmark = pytest.mark.kernel

POLICY = """\
name: counted
default_action: deny
rules:
  - {name: allow_web, priority: 10, action: allow, protocol: tcp, destination_ports: [443]}
  - {name: drop_telnet, priority: 20, action: deny, protocol: tcp, destination_ports: [23]}
  - {name: allow_v6_dns, priority: 30, action: allow, protocol: udp,
     source_cidrs: ["2001:db8::/32"], destination_ports: [53]}
"""
SLOTS = ["allow_web", "drop_telnet", "allow_v6_dns", "default", "malformed", "non_ip", "would_drop"]

WEB = fr.build_frame(fr.fields_from_mapping({"proto": "tcp", "dport": 443}))
TELNET = fr.build_frame(fr.fields_from_mapping({"proto": "tcp", "dport": 23}))
DNS6 = fr.build_frame(fr.fields_from_mapping({"proto": "udp", "src": "2001:db8::9", "dport": 53}))
OTHER = fr.build_frame(fr.fields_from_mapping({"proto": "udp", "dport": 9}))
BROKEN = WEB[:30]
ARP = fr.ethernet(0x0806) + bytes(28)

# (frame, times sent, XDP action without / with dry-run)
SENT = [
    (WEB, 3, 2, 2),
    (TELNET, 2, 1, 2),
    (DNS6, 1, 2, 2),
    (OTHER, 4, 1, 2),
    (BROKEN, 1, 1, 2),
    (ARP, 2, 2, 2),
]

# slot -> frames counted there (would_drop only in dry-run)
EXPECTED = {
    "allow_web": [WEB] * 3,
    "drop_telnet": [TELNET] * 2,
    "allow_v6_dns": [DNS6],
    "default": [OTHER] * 4,
    "malformed": [BROKEN],
    "non_ip": [ARP] * 2,
}
WOULD_DROP = [TELNET] * 2 + [OTHER] * 4 + [BROKEN]


@pytest.mark.parametrize("dry_run", [False, True])
def test_counters_per_slot(dry_run: bool, tmp_path: Path) -> None:
    result = compile_policy(policy_of(POLICY), output=tmp_path / "fw.o", dry_run=dry_run)
    names = result.manifest["counters"]["slots"]["name"]
    assert names == [f"rule:{n}" for n in SLOTS[:3]] + SLOTS[3:]
    with LoadedProgram.load(result.path) as prog:
        for frame, times, action, dry_action in SENT:
            for _ in range(times):
                assert prog.test_run(frame).retval == (dry_action if dry_run else action)
        counters = dict(zip(SLOTS, prog.counters(), strict=True))
        prog.reset_counters()
        assert all(c == (0, 0) for c in prog.counters())
    expected = dict(EXPECTED, would_drop=WOULD_DROP if dry_run else [])
    for slot, frames in expected.items():
        assert counters[slot] == (len(frames), sum(map(len, frames))), slot


def test_repeat_counts_every_run(tmp_path: Path) -> None:
    result = compile_policy(policy_of(POLICY), output=tmp_path / "fw.o")
    with LoadedProgram.load(result.path) as prog:
        prog.test_run(WEB, repeat=100)
        assert prog.counters()[0] == (100, 100 * len(WEB))
