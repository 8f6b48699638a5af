"""`fw-load run --watch`: a ConfigMap-style artifact volume followed by the daemon; only an
artifact whose sha256 matches its pinned digest is applied, any other is refused and counted."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from fwc.loader.daemon import watch
from tests.configmap import ConfigMapVolume, sha256sum_line
from tests.loader_netns import compile_policy, udp_delivered, veth_pair, wait_until
from tests.watch_node import watch_node

POLICY = """
name: watched
default_action: allow
rules:
  - {{name: deny_udp, priority: 10, action: deny, protocol: udp, destination_ports: [{port}]}}
"""

DIGEST = "ab" * 32


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (f"{DIGEST}  fw.o\n", DIGEST),
        (f"{DIGEST}\n", DIGEST),
        (f"{DIGEST.upper()} *fw.o", DIGEST),
        (f"sha256:{DIGEST}", DIGEST),
        ("", None),
        ("abc  fw.o", None),
        (f"{DIGEST}0  fw.o", None),
    ],
)
def test_parse_pin(text: str, expected: str | None) -> None:
    assert watch.parse_pin(text) == expected


def test_verify_reasons(tmp_path: Path) -> None:
    volume = ConfigMapVolume(tmp_path / "vol")
    path = volume.root / "fw.o"
    volume.artifact(b"one")
    checked = watch.verify(path)
    assert isinstance(checked, watch.Verified)
    assert checked.digest == hashlib.sha256(b"one").hexdigest()
    volume.artifact(b"two", pin=b"one")
    assert _reason(watch.verify(path)) == "digest_mismatch"
    volume.unpinned(b"three")
    assert _reason(watch.verify(path)) == "unpinned"
    volume.publish({"fw.o.sha256": sha256sum_line(b"x", "fw.o").encode()})
    assert _reason(watch.verify(path)) == "unreadable"


def test_watcher_applies_only_new_pinned_bytes(tmp_path: Path) -> None:
    volume = ConfigMapVolume(tmp_path / "vol")
    path = volume.root / "fw.o"
    applied: list[bytes] = []

    def apply(copy: Path) -> object:
        applied.append(copy.read_bytes())
        return "report"

    watcher = watch.Watcher(path)
    volume.artifact(b"one")
    assert isinstance(watcher.poll(apply), watch.Applied)  # type: ignore[arg-type]
    assert watcher.poll(apply) is None  # type: ignore[arg-type]
    volume.artifact(b"one")  # the same bytes again (a resync): nothing to do
    assert watcher.poll(apply) is None  # type: ignore[arg-type]
    volume.artifact(b"two", pin=b"one")
    assert watcher.poll(apply) is None  # type: ignore[arg-type]  (held one poll)
    rejected = watcher.poll(apply)  # type: ignore[arg-type]
    assert isinstance(rejected, watch.Rejection) and rejected.reason == "digest_mismatch"
    assert watcher.rejection == rejected
    assert watch.not_ready(watcher).startswith(f"the artifact at {path} was rejected")
    assert applied == [b"one"]


def _reason(outcome: watch.Verified | watch.Rejection) -> str:
    assert isinstance(outcome, watch.Rejection), outcome
    return outcome.reason


@pytest.mark.kernel
@pytest.mark.netns
def test_watch_follows_a_configmap_volume(tmp_path: Path) -> None:
    first = compile_policy(POLICY.format(port=7101), tmp_path).read_bytes()
    second = compile_policy(POLICY.format(port=7102), tmp_path).read_bytes()
    volume = ConfigMapVolume(tmp_path / "volume")
    volume.artifact(first)
    port = 20000 + (os.getpid() + 7) % 20000
    with veth_pair(subnet=14) as pair:
        with watch_node(pair, volume.root / "fw.o", port, tmp_path / "node.log") as node:
            assert wait_until(lambda: node.get("/readyz")[0] == 200, 30), node.stderr()
            assert node.get("/healthz") == (200, "ok\n")
            assert node.status()["digest"] == hashlib.sha256(first).hexdigest()
            assert (udp_delivered(pair, 7101, 5), udp_delivered(pair, 7102, 5)) == (0, 5)
            prog = pair.status()["policies"][0]
            # what reaches the node is what was pinned beside the watched path, not a manual apply
            manual = tmp_path / "manual.o"
            manual.write_bytes(second)
            refused = pair.fwload("apply", str(manual))
            assert refused.returncode == 2 and "follows" in refused.stderr, refused.stderr

            volume.artifact(second)
            digest = hashlib.sha256(second).hexdigest()
            assert wait_until(lambda: node.status().get("digest") == digest, 15), node.stderr()
            assert wait_until(lambda: node.get("/readyz")[0] == 200, 10)
            assert (udp_delivered(pair, 7101, 5), udp_delivered(pair, 7102, 5)) == (5, 0)
            assert pair.status()["policies"][0] != prog
            assert node.metric("fwc_applies_total", 'result="ok"') == 2
            assert node.metric(
                "fwc_artifact_info", f'digest="{digest}",source="{volume.root}/fw.o"'
            )

            bad = [
                ("digest_mismatch", lambda: volume.artifact(first, pin=second)),
                ("unpinned", lambda: volume.unpinned(first)),
                ("invalid", lambda: volume.artifact(b"not an ELF file")),
            ]
            for count, (reason, publish) in enumerate(bad, start=1):
                publish()
                labels = f'reason="{reason}"'

                def counted(labels: str = labels) -> bool:
                    return node.metric("fwc_watch_rejected_total", labels) == 1

                assert wait_until(counted, 15), (reason, node.stderr())
                code, why = node.get("/readyz")
                assert code == 503 and f"rejected ({reason})" in why
                events = [e for e in node.status()["events"] if e["kind"] == "rejected"]
                assert len(events) == count and events[-1]["reason"] == reason
                assert node.status()["digest"] == digest
                assert f"watch: rejected {volume.root}/fw.o ({reason})" in node.stderr()
            # the second policy still runs, untouched
            assert (udp_delivered(pair, 7101, 5), udp_delivered(pair, 7102, 5)) == (5, 0)

            volume.artifact(first)
            assert wait_until(lambda: node.get("/readyz")[0] == 200, 15), node.stderr()
            assert (udp_delivered(pair, 7101, 5), udp_delivered(pair, 7102, 5)) == (0, 5)
        assert node.process.returncode == 0, node.stderr()

        # a daemon restarted while the volume holds a refused artifact follows what is pinned
        volume.artifact(second, pin=first)
        with watch_node(pair, volume.root / "fw.o", port, tmp_path / "again.log") as again:
            labels = 'reason="digest_mismatch"'
            assert wait_until(lambda: again.metric("fwc_watch_rejected_total", labels) == 1, 30)
            assert again.status()["policy"] == "watched"
            assert again.get("/readyz")[0] == 503
            assert (
                'fwc_rule_packets_total{action="deny",policy="watched"' in again.get("/metrics")[1]
            )
            assert pair.attached() == {pair.if_a: "watched"}
            assert (udp_delivered(pair, 7101, 5), udp_delivered(pair, 7102, 5)) == (0, 5)
        assert again.process.returncode == 0, again.stderr()
