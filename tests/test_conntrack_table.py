"""fw-load and a policy with `state`: the refusals when the kernel cannot track connections, and
the nftables table `inet fwc_ct_<policy>` it owns (made before the attach, gone after detach,
in the right namespace, made again by the daemon)."""

from __future__ import annotations

import json
import struct
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from fwc.loader.apply.transaction import ApplyOptions, prepare, refuse_unless_trackable
from fwc.loader.errors import LoaderError
from fwc.loader.node import ctprobe
from tests.loader_netns import FWLOAD, Pair, compile_policy, sh, unique, veth_pair, wait_until

STATEFUL = """
name: {name}
default_action: deny
rules:
  - {{name: replies, priority: 10, action: allow, state: [established, related]}}
  - {{name: ssh, priority: 20, action: allow, protocol: tcp, destination_ports: [22]}}
  - {{name: mdns, priority: 30, action: allow, protocol: udp, destination_ports: [5353]}}
"""
STATELESS = """
name: {name}
default_action: allow
rules:
  - {{name: deny_udp_9, priority: 10, action: deny, protocol: udp, destination_ports: [9]}}
"""


def btf(funcs: tuple[str, ...], other: tuple[str, ...] = (), base_strings: int = 0) -> bytes:
    """A BTF blob with a FUNC per name in `funcs` (over an INT and a FUNC_PROTO) and `other`
    as a STRUCT name only; split BTF over a base with `base_strings` bytes of strings."""
    strings = b"\0"
    offsets = {}
    for name in (*funcs, *other, "int"):
        offsets[name] = base_strings + len(strings)
        strings += name.encode() + b"\0"
    types = struct.pack("<III", offsets["int"], 1 << 24, 4) + struct.pack("<I", 32)
    types += struct.pack("<III", 0, (13 << 24) | 1, 1) + struct.pack("<II", 0, 1)
    for name in other:
        types += struct.pack("<III", offsets[name], (4 << 24) | 1, 4) + struct.pack("<III", 0, 1, 0)
    for name in funcs:
        types += struct.pack("<III", offsets[name], 12 << 24, 2)
    header = struct.pack("<HBBIIIII", 0xEB9F, 1, 0, 24, 0, len(types), len(types), len(strings))
    return header + types + strings


def host(tmp: Path, vmlinux: bytes | None, module: bytes | None, conntrack: bool) -> ctprobe.Host:
    paths = ctprobe.Host(tmp / "vmlinux", tmp / "nf_conntrack", tmp / "nf_conntrack_max")
    for path, data in ((paths.vmlinux_btf, vmlinux), (paths.module_btf, module)):
        if data is not None:
            path.write_bytes(data)
    if conntrack:
        paths.conntrack_max.write_text("65536\n")
    return paths


BASE = btf(("tcp_v4_rcv",), other=(ctprobe.KFUNC + "_args",))
BASE_STRINGS = struct.unpack_from("<I", BASE, 20)[0]


@pytest.mark.parametrize(
    ("vmlinux", "module", "conntrack", "reason"),
    [
        (btf((ctprobe.KFUNC,)), None, True, ""),
        (BASE, btf((ctprobe.KFUNC,), base_strings=BASE_STRINGS), True, ""),
        # a module FUNC whose name offset does not count the base's strings names another string
        (BASE, btf((ctprobe.KFUNC,)), True, "lacks the"),
        (BASE, None, True, f"lacks the {ctprobe.KFUNC} kfunc"),
        # the name among the strings, but no FUNC of it
        (btf(("tcp_v4_rcv",), other=(ctprobe.KFUNC,)), None, True, "lacks the"),
        (btf((ctprobe.KFUNC,)), None, False, "has no connection tracking"),
        (None, None, True, "exposes no BTF"),
        (b"not btf at all", None, True, "lacks the"),
    ],
    ids=[
        "vmlinux",
        "module",
        "module-unsplit",
        "no-kfunc",
        "string-only",
        "no-conntrack",
        "no-btf",
        "garbage",
    ],
)
def test_probe_reasons(
    tmp_path: Path, vmlinux: bytes | None, module: bytes | None, conntrack: bool, reason: str
) -> None:
    said = ctprobe.refusal(host(tmp_path, vmlinux, module, conntrack))
    assert (reason in said) if reason else said == ""
    assert "\n" not in said


def test_this_kernel_can_track() -> None:
    assert ctprobe.refusal(ctprobe.Host()) == ""


@contextmanager
def stateful_pair(tmp_path: Path, subnet: int) -> Iterator[tuple[Pair, Path, str]]:
    name = unique("ct")
    artifact = compile_policy(STATEFUL.format(name=name), tmp_path)
    with veth_pair(subnet=subnet) as pair:
        yield pair, artifact, name


def tables(pair: Pair, ns: str | None = None) -> set[str]:
    """The nftables tables of namespace a (or `ns`), as `family name`."""
    cmd = ["nft", "list", "tables"]
    out = sh("ip", "netns", "exec", ns or pair.ns_a, *cmd).stdout
    return {line.removeprefix("table ").strip() for line in out.splitlines() if line.strip()}


# applied in namespace a through report.execute with a host of the test's choosing
_APPLY_WITH_HOST = """
import json, sys
from pathlib import Path
from fwc.loader.apply import report
from fwc.loader.apply.transaction import ApplyOptions
from fwc.loader.node.ctprobe import Host
artifact, root, host = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
opts = ApplyOptions(artifact=Path(artifact), root=Path(root), host=Host(
    Path(host["vmlinux"]), Path(host["module"]), Path(host["conntrack_max"]), host["nft"]))
outcome = report.execute(opts, False)
sys.stderr.write(outcome.stderr)
sys.exit(outcome.code)
"""


def apply_with_host(
    pair: Pair, artifact: Path, probe: ctprobe.Host
) -> subprocess.CompletedProcess[str]:
    spec = {
        "vmlinux": str(probe.vmlinux_btf),
        "module": str(probe.module_btf),
        "conntrack_max": str(probe.conntrack_max),
        "nft": probe.nft,
    }
    return subprocess.run(
        pair.nsenter_a(
            sys.executable, "-c", _APPLY_WITH_HOST, str(artifact), str(pair.root), json.dumps(spec)
        ),
        capture_output=True,
        text=True,
        env=pair.fwload_env(),
        timeout=60,
    )


@pytest.mark.kernel
@pytest.mark.netns
def test_each_refusal_is_one_line_exit_2_and_changes_nothing(tmp_path: Path) -> None:
    real = ctprobe.Host()
    no_kfunc = host(tmp_path, BASE, None, True)
    no_conntrack = ctprobe.Host(real.vmlinux_btf, real.module_btf, tmp_path / "absent")
    no_nft = ctprobe.Host(nft=str(tmp_path / "no" / "nft"))
    cases = [
        (no_kfunc, f"lacks the {ctprobe.KFUNC} kfunc"),
        (no_conntrack, "has no connection tracking"),
        (no_nft, "not found: fw-load needs the nftables command line"),
    ]
    with stateful_pair(tmp_path, subnet=20) as (pair, artifact, name):
        for probe, reason in cases:
            done = apply_with_host(pair, artifact, probe)
            assert done.returncode == 2, done.stderr
            lines = done.stderr.strip().splitlines()
            assert len(lines) == 1 and reason in lines[0], done.stderr
            assert lines[0].startswith("fw-load apply: ")
            assert pair.attached() == {}
            assert f"inet fwc_ct_{name}" not in tables(pair)
        # the same artifact with the real host applies
        assert apply_with_host(pair, artifact, real).returncode == 0
        assert pair.attached() == {pair.if_a: name}


def test_a_stateless_artifact_is_never_probed(tmp_path: Path) -> None:
    # no BTF, no conntrack, no nft: nothing of it matters without state rules
    artifact = compile_policy(STATELESS.format(name=unique("nl")), tmp_path)
    probe = ctprobe.Host(tmp_path / "a", tmp_path / "b", tmp_path / "c", str(tmp_path / "nft"))
    opts = ApplyOptions(artifact=artifact, root=Path("/sys/fs/bpf") / unique("nl"), host=probe)
    refuse_unless_trackable(prepare(opts), probe)
    stateful = compile_policy(STATEFUL.format(name=unique("st")), tmp_path)
    with pytest.raises(LoaderError, match="has rules with `state`, but the kernel has no conn"):
        refuse_unless_trackable(prepare(ApplyOptions(artifact=stateful, root=opts.root)), probe)


@pytest.mark.kernel
@pytest.mark.netns
def test_table_lives_with_the_policy_in_its_namespace(tmp_path: Path) -> None:
    with stateful_pair(tmp_path, subnet=21) as (pair, artifact, name):
        table = f"inet fwc_ct_{name}"
        outside = tables(pair, pair.ns_b)
        first = pair.fwload("apply", str(artifact))
        assert first.returncode == 0, first.stderr
        assert f"conntrack: nftables table {table} created" in first.stdout
        assert table in tables(pair)
        assert tables(pair, pair.ns_b) == outside
        assert table.split()[1] not in sh("nft", "list", "tables").stdout
        ruleset = sh("ip", "netns", "exec", pair.ns_a, "nft", "list", "table", *table.split())
        assert "hook prerouting priority raw; policy accept;" in ruleset.stdout
        assert "ct state" in ruleset.stdout and "counter" in ruleset.stdout
        assert "accept" not in ruleset.stdout.split("policy accept;")[1]
        (policy,) = pair.status()["policies"]
        assert policy["conntrack_table"]["name"] == table
        assert policy["conntrack_table"]["present"] is True
        text = pair.fwload("status").stdout
        assert f"conntrack: nftables table {table} present" in text

        # the namespace now tracks: a datagram from b that the policy lets in has an entry in a
        sh("ip", "netns", "exec", pair.ns_b, "bash", "-c", f"echo > /dev/udp/{pair.ip_a}/5353")
        entries = sh("ip", "netns", "exec", pair.ns_a, "conntrack", "-L", "-p", "udp")
        assert f"dst={pair.ip_a}" in entries.stdout and "dport=5353" in entries.stdout

        again = pair.fwload("apply", str(artifact), "--no-live-update")
        assert again.returncode == 0, again.stderr
        assert f"conntrack: nftables table {table} kept" in again.stdout
        assert sorted(tables(pair)).count(table) == 1

        gone = pair.fwload("detach", "--all")
        assert gone.returncode == 0, gone.stderr
        assert table not in tables(pair)
        assert pair.status()["policies"] == []


@pytest.mark.kernel
@pytest.mark.netns
def test_a_failed_apply_removes_the_table_it_made(tmp_path: Path) -> None:
    with stateful_pair(tmp_path, subnet=22) as (pair, artifact, name):
        # the policy lets no new connection to port 80 in: the lockout check refuses (exit 1)
        refused = pair.fwload("apply", str(artifact), "--keep-access", "10.9.9.9:80")
        assert refused.returncode == 1, refused.stderr
        assert f"inet fwc_ct_{name}" not in tables(pair)
        assert pair.attached() == {}


@pytest.mark.kernel
@pytest.mark.netns
def test_a_swap_to_a_policy_without_state_deletes_the_table(tmp_path: Path) -> None:
    with stateful_pair(tmp_path, subnet=23) as (pair, artifact, name):
        table = f"inet fwc_ct_{name}"
        assert pair.fwload("apply", str(artifact)).returncode == 0
        assert table in tables(pair)
        same = compile_policy(STATELESS.format(name=name), tmp_path)
        swapped = pair.fwload("apply", str(same))
        assert swapped.returncode == 0, swapped.stderr
        assert f"{table} deleted (no rule has state now)" in swapped.stdout
        assert table not in tables(pair)

        # another policy taking the interfaces: the one it replaces loses pins and table
        assert pair.fwload("apply", str(artifact)).returncode == 0
        other = compile_policy(STATELESS.format(name=unique("ot")), tmp_path)
        assert pair.fwload("apply", str(other)).returncode == 0
        assert table not in tables(pair)
        assert name not in {p["name"] for p in pair.status()["policies"]}


@pytest.mark.kernel
@pytest.mark.netns
def test_the_daemon_makes_a_deleted_table_again_and_keeps_it_on_exit(tmp_path: Path) -> None:
    with stateful_pair(tmp_path, subnet=24) as (pair, artifact, name):
        table = f"inet fwc_ct_{name}"
        log = tmp_path / "daemon.log"
        with log.open("wb") as out:
            proc = subprocess.Popen(
                pair.nsenter_a(FWLOAD, "run", str(artifact), "--metrics-addr", "off"),
                stderr=out,
                env=pair.fwload_env(),
            )
        try:
            assert wait_until(lambda: "control socket" in log.read_text(), 30), log.read_text()
            assert table in tables(pair)
            sh("ip", "netns", "exec", pair.ns_a, "nft", "delete", "table", *table.split())
            assert wait_until(lambda: table in tables(pair), 10), log.read_text()
            assert f"WARNING: nftables table {table} was deleted under the daemon" in (
                log.read_text()
            )
        finally:
            if proc.poll() is None:
                proc.terminate()
            code = proc.wait(timeout=30)
        assert code == 0, log.read_text()
        # stopped without --detach-on-exit: the program stays, and so does its table
        assert pair.attached() == {pair.if_a: name}
        assert table in tables(pair)
