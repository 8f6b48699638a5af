"""Live updates of tables policies: verdicts flip with one index, counters keep their names, and
artifacts that do not fit take the program swap and say why."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from fwc.artifact import codec
from fwc.compiler.oracle import frames as fr
from fwc.loader.kernel import array_mmap, libbpf
from fwc.loader.kernel.records import split_records
from fwc.loader.live.compat import can_update_in_place
from fwc.loader.live.pinned import initial_record, meta_manifest
from fwc.loader.reader.artifact import read_artifact
from tests.loader_netns import (
    FWC,
    UDP_RECEIVER,
    UDP_SENDER,
    Pair,
    background,
    sh,
    udp_delivered,
    unique,
    veth_pair,
)

pytestmark = [pytest.mark.kernel, pytest.mark.netns]

XDP_DROP, XDP_PASS = 1, 2

# same name, same rule count: the second changes verdicts and one rule's name
FIRST = """
name: live
default_action: allow
rules:
  - {name: allow_flow, priority: 10, action: allow, protocol: udp, destination_ports: [5353]}
  - {name: open_5354, priority: 20, action: allow, protocol: udp, destination_ports: [5354]}
  - {name: deny_flow, priority: 30, action: deny, protocol: udp, destination_ports: [5355]}
"""

SECOND = """
name: live
default_action: allow
rules:
  - {name: allow_flow, priority: 10, action: allow, protocol: udp, destination_ports: [5353]}
  - {name: close_5354, priority: 20, action: deny, protocol: udp, destination_ports: [5354]}
  - {name: deny_flow, priority: 30, action: deny, protocol: udp, destination_ports: [5355]}
"""

# more rules than the live counters map has slots for
BIGGER = SECOND + "".join(
    f"  - {{name: extra_{i}, priority: {100 + i}, action: deny, protocol: tcp, "
    f"destination_ports: [{6000 + i}]}}\n"
    for i in range(8)
)

# a rule names a source address, a field no rule of SECOND or BIGGER constrains: the program
# now walks the source trie, so it differs (docs/tables.md, "Classification")
WIDER = SECOND + (
    "  - {name: from_lab, priority: 40, action: deny, protocol: udp, "
    "source_cidrs: [192.0.2.0/24], destination_ports: [5356]}\n"
)


def compile_tables(text: str, out_dir: Path, strategy: str = "tables") -> Path:
    source = out_dir / f"{unique('lu')}.yaml"
    source.write_text(textwrap.dedent(text))
    artifact = source.with_suffix(".o")
    sh(
        FWC,
        "compile",
        str(source),
        "-o",
        str(artifact),
        "--strategy",
        strategy,
        "--no-gate",
        timeout=120,
    )
    return artifact


def apply_json(pair: Pair, artifact: Path, *flags: str) -> dict[str, Any]:
    result = pair.fwload("apply", str(artifact), "--json", *flags)
    assert result.returncode == 0, result.stderr
    report: dict[str, Any] = json.loads(result.stdout)
    return report


def verdict_of(pair: Pair, policy: str, port: int, proto: str = "udp") -> int:
    """The pinned program's verdict for a `proto` packet to `port` (BPF_PROG_TEST_RUN)."""
    frame = fr.build_frame(fr.fields_from_mapping({"proto": proto, "dport": port}))
    fd = libbpf.obj_get(pair.root / policy / "prog")
    try:
        return libbpf.prog_test_run(fd, frame)[0]
    finally:
        os.close(fd)


def test_live_update_flips_verdicts_and_carries_counters(tmp_path: Path) -> None:
    first, second = compile_tables(FIRST, tmp_path), compile_tables(SECOND, tmp_path)
    with veth_pair(subnet=6) as pair:
        report = apply_json(pair, first)
        assert report["update"]["path"] == "program-swap"
        assert "not applied yet" in report["update"]["reason"]
        prog_id = report["prog_id"]
        assert udp_delivered(pair, 5353, 20) == 20
        assert udp_delivered(pair, 5354, 20) == 20
        assert verdict_of(pair, "live", 5354) == XDP_PASS
        before = pair.stats()

        report = apply_json(pair, second)
        assert report["update"]["path"] == "live-update"
        assert report["update"]["summary"] == "live-update: generation 0 -> 1"
        assert report["prog_id"] == prog_id
        assert {i["action"] for i in report["interfaces"]} == {"live-updated"}
        assert verdict_of(pair, "live", 5354) == XDP_DROP
        assert verdict_of(pair, "live", 5353) == XDP_PASS
        assert udp_delivered(pair, 5354, 20) == 0
        assert udp_delivered(pair, 5353, 20) == 20

        after = pair.stats()
        # the same-named rule kept its count; the new rule started from zero on a reused slot
        # (20 datagrams and one BPF_PROG_TEST_RUN frame)
        assert after["rule:allow_flow"][0] >= before["rule:allow_flow"][0] + 21
        assert "rule:open_5354" not in after and after["rule:close_5354"][0] == 21
        (policy,) = pair.status()["policies"]
        assert policy["sha256"] == read_artifact(second).sha256
        assert policy["prog_id"] == prog_id

        # and back: generation 1 -> 0
        report = apply_json(pair, first)
        assert report["update"]["summary"] == "live-update: generation 1 -> 0"
        assert verdict_of(pair, "live", 5354) == XDP_PASS


def test_artifacts_that_do_not_fit_take_the_program_swap(tmp_path: Path) -> None:
    first = compile_tables(FIRST, tmp_path)
    constants = compile_tables(SECOND, tmp_path, strategy="constants")
    bigger = compile_tables(BIGGER, tmp_path)
    wider = compile_tables(WIDER, tmp_path)
    second = compile_tables(SECOND, tmp_path)
    with veth_pair(subnet=7) as pair:
        apply_json(pair, first)
        cases = [
            (bigger, (), "counters map would grow"),
            (wider, (), "the program differs from the live one"),
            (first, ("--no-live-update",), "--no-live-update"),
            (constants, (), "strategy 'constants'"),
            (second, (), "strategy 'constants'"),  # the live policy is now a constants one
        ]
        for artifact, flags, reason in cases:
            update = apply_json(pair, artifact, *flags)["update"]
            assert update["path"] == "program-swap", (artifact, update)
            assert reason in update["reason"], update
        human = pair.fwload("apply", str(first))
        assert human.returncode == 0 and "live-update: generation 0 -> 1" in human.stdout
        assert verdict_of(pair, "live", 5354) == XDP_PASS


def _live_manifest(artifact: Path) -> dict[str, Any]:
    spec = read_artifact(artifact)
    return json.loads(meta_manifest(spec.manifest, initial_record(spec)))


def _shrink(name: str, entries: int) -> Any:
    def edit(manifest: dict[str, Any]) -> None:
        for m in manifest["maps"]:
            if m["name"] == name:
                m["max_entries"] = entries

    return edit


@pytest.mark.parametrize(
    ("edit", "reason"),
    [
        (lambda m: None, ""),
        (lambda m: m.pop("fw_load"), "records no program digest"),
        (lambda m: m["fw_load"].update(program_sha256="0" * 64), "program differs"),
        (lambda m: m.update(dry_run=True), "dry-run switch differs"),
        (_shrink("fwc_rule1", 2), "map fwc_rule1 holds 2 entries"),
        (_shrink("fwc_counters", 2), "would grow from 2 to 7"),
        (lambda m: m["maps"].pop(), "the maps differ"),
    ],
)
def test_can_update_in_place_says_why_not(tmp_path: Path, edit: Any, reason: str) -> None:
    artifact = compile_tables(SECOND, tmp_path)
    live = _live_manifest(compile_tables(FIRST, tmp_path))
    edit(live)
    possible, why = can_update_in_place(codec.from_json(live), read_artifact(artifact))
    assert possible == (not reason)
    assert reason in why


def test_split_records_separates_keys_and_values() -> None:
    records = b"".join(i.to_bytes(4, "little") + bytes([i]) * 6 for i in range(5))
    keys, values = split_records(records, 4, 6)
    assert keys == b"".join(i.to_bytes(4, "little") for i in range(5))
    assert values == b"".join(bytes([i]) * 6 for i in range(5))


# flips the tables back and forth in one process (the CLI's start-up would dominate the run)
FLIPPER = """
import sys
from pathlib import Path
from fwc.loader.apply.transaction import ApplyOptions, apply
root, flips, artifacts = Path(sys.argv[1]), int(sys.argv[2]), sys.argv[3:]
for i in range(flips):
    report = apply(ApplyOptions(artifact=Path(artifacts[i % len(artifacts)]), root=root))
    assert report.path == "live-update", report
print("flipped", flips)
"""

FLIPS = 20
PACKETS = 3000

# both allow 5353 and deny 5355; they differ on 5354
STEADY = [FIRST, SECOND]


def test_flips_under_traffic_lose_and_leak_nothing(tmp_path: Path) -> None:
    first, second = (compile_tables(text, tmp_path) for text in STEADY)
    with veth_pair(subnet=8) as pair:
        assert apply_json(pair, first)["update"]["path"] == "program-swap"
        with (
            background(pair.exec_a(sys.executable, "-c", UDP_RECEIVER, "5353", "2")) as allowed,
            background(pair.exec_a(sys.executable, "-c", UDP_RECEIVER, "5355", "2")) as denied,
        ):
            senders = [
                subprocess.Popen(
                    pair.exec_b(
                        sys.executable,
                        "-c",
                        UDP_SENDER,
                        pair.ip_a,
                        str(port),
                        str(PACKETS),
                        "0.001",
                    )
                )
                for port in (5353, 5355)
            ]
            flipper = subprocess.run(
                pair.nsenter_a(
                    sys.executable,
                    "-c",
                    FLIPPER,
                    str(pair.root),
                    str(FLIPS),
                    str(second),
                    str(first),
                ),
                capture_output=True,
                text=True,
                timeout=120,
                env=pair.fwload_env(),
            )
            for sender in senders:
                assert sender.wait(timeout=60) == 0
            got_allowed = int(allowed.communicate(timeout=30)[0].split()[-1])
            got_denied = int(denied.communicate(timeout=30)[0].split()[-1])
        assert flipper.returncode == 0, flipper.stderr
        assert got_allowed == PACKETS
        assert got_denied == 0
        # the flips above wrote the idle tables through mmap, not record by record
        for name in ("fwc_carr0", "fwc_carr1", "fwc_s4_1", "fwc_rule1"):
            fd = libbpf.obj_get(pair.root / "live" / "maps" / name)
            try:
                assert array_mmap.mmapable(libbpf.map_info(fd)), name
            finally:
                os.close(fd)
        # one counters map throughout: no count is lost to a swap
        stats = pair.stats()
        assert stats["rule:allow_flow"][0] == PACKETS
        assert stats["rule:deny_flow"][0] == PACKETS
