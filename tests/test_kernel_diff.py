"""Every change `fwc diff` claims, run in the kernel: each change's example packet goes through
the compiled old and new programs (both strategies), which must give the old and the new
verdict and count it under the old and the new deciding rule."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from fwc.compiler.analysis.diff import Change, Decider, diff
from fwc.compiler.analysis.index import RuleIndex
from fwc.compiler.backend.build import compile_policy
from fwc.compiler.oracle.evaluate import XDP_DROP, XDP_PASS
from fwc.compiler.oracle.frames import build_frame, fields_from_mapping
from fwc.compiler.policy.ir import Action, Policy
from fwc.loader.kernel.program import LoadedProgram
from tests.compile_helpers import policy_of

pytestmark = pytest.mark.kernel

ROOT = Path(__file__).resolve().parent.parent
EDGE = (ROOT / "policies" / "edge-web.yaml").read_text(encoding="utf-8")
BLOCKLIST_RULE = """  - name: drop_blocklist
    priority: 5
    action: deny
    source_cidrs: ["$blocklist"]
    description: Known-bad networks, dropped before anything else.
"""
RATE_LIMITED_DNS = """  - name: allow_dns_replies
    priority: 30
    action: rate_limit
    rate_limit_pps: 1000
    rate_limit_burst: 1000000
    protocol: udp"""

# (what the diff is, the new policy's text): each differs from edge-web.yaml.
DIFFS: list[tuple[str, str]] = [
    (
        "ssh from one more network",
        EDGE.replace('"fd00:20::/48"]', '"fd00:20::/48", "203.0.113.0/24"]'),
    ),
    ("blocklist removed", EDGE.replace(BLOCKLIST_RULE, "")),
    ("blocklist moved last", EDGE.replace("priority: 5\n", "priority: 60\n")),
    ("web range narrowed", EDGE.replace('"8000-8099"', '"8000-8049"')),
    ("established needs !SYN", EDGE.replace('tcp_flags: "ACK"', 'tcp_flags: "ACK,!SYN"')),
    ("default allow", EDGE.replace("default_action: deny", "default_action: allow")),
    ("ping types cut", EDGE.replace("icmp_types: [0, 3, 8, 11]", "icmp_types: [0, 8]")),
    (
        "dns rate limited",
        EDGE.replace(
            "  - name: allow_dns_replies\n    priority: 30\n    action: allow\n    protocol: udp",
            RATE_LIMITED_DNS,
        ),
    ),
    ("rule renamed", EDGE.replace("name: allow_ping", "name: allow_icmp")),
    ("web logged", EDGE.replace("    description: Public web traffic.", "    log: true")),
]

XDP = {Action.ALLOW: XDP_PASS, Action.RATE_LIMIT: XDP_PASS, Action.DENY: XDP_DROP}


@dataclass
class Compiled:
    """A policy loaded in the kernel, with its counter slots by index."""

    program: LoadedProgram
    slots: dict[int, str]

    def run(self, frame: bytes) -> tuple[int, str]:
        """The XDP action and the one counter slot the frame landed in."""
        self.program.reset_counters()
        action = self.program.test_run(frame).retval
        counted = enumerate(self.program.counters())
        # a rate-limited rule also counts what its bucket decided, in a slot of its own
        hit = [
            self.slots[i]
            for i, (packets, _) in counted
            if packets and not self.slots[i].startswith("rate_limit_")
        ]
        assert len(hit) == 1, hit
        return action, hit[0]


def load(policy: Policy, strategy: str, out: Path) -> Compiled:
    result = compile_policy(policy, output=out, strategy=strategy)
    table = result.manifest["counters"]["slots"]
    return Compiled(
        LoadedProgram.load(result.path), dict(zip(table["index"], table["name"], strict=True))
    )


def slot(decider: Decider) -> str:
    return f"rule:{decider.rule.name}" if decider.rule is not None else "default"


def claimed(change: Change) -> tuple[tuple[int, str], tuple[int, str]]:
    old, new = change.old, change.new
    return (XDP[old.behaviour.action], slot(old)), (XDP[new.behaviour.action], slot(new))


# The tables strategy does not compile rate_limit or log rules (FWC050): those diffs run on one.
CASES = [
    pytest.param(strategy, what, text, id=f"{what}-{strategy}")
    for what, text in DIFFS
    for strategy in ("constants", "tables")
    if strategy == "constants" or not ("rate_limit" in text or "log: true" in text)
]


@pytest.mark.parametrize(("strategy", "what", "new_text"), CASES)
def test_each_change_example_runs_as_claimed(
    strategy: str, what: str, new_text: str, tmp_path: Path
) -> None:
    old_policy = policy_of(EDGE, "old.yaml")
    new_policy = policy_of(new_text, "new.yaml")
    changes = diff(RuleIndex(old_policy), RuleIndex(new_policy))
    assert changes, f"{what}: the diff found nothing"
    old = load(old_policy, strategy, tmp_path / "old.o")
    new = load(new_policy, strategy, tmp_path / "new.o")
    try:
        for change in changes:
            frame = build_frame(fields_from_mapping(change.example))
            want_old, want_new = claimed(change)
            assert old.run(frame) == want_old, (what, change.example)
            assert new.run(frame) == want_new, (what, change.example)
    finally:
        old.program.close()
        new.program.close()
