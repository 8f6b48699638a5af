"""A failed apply leaves the previous policy attached and pinned exactly as before."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from elftools.elf.elffile import ELFFile

from fwc.artifact import claims, codec
from tests.loader_netns import Pair, compile_policy, sh, unique, veth_pair

pytestmark = [pytest.mark.kernel, pytest.mark.netns]

GOOD = """
name: fail-good
default_action: allow
rules:
  - {name: deny_udp_9, priority: 10, action: deny, protocol: udp, destination_ports: [9]}
"""

OTHER = """
name: fail-good
default_action: deny
rules:
  - {name: allow_icmp, priority: 10, action: allow, protocol: icmp}
"""

# reads past the end of the packet without a bounds check: the verifier must refuse it
REJECTED_C = r"""
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
struct counter { __u64 packets; __u64 bytes; };
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct counter);
} fwc_counters SEC(".maps");
#define FWC_CLAIM(word) asm volatile("r0 = " #word " ll" ::: "r0")
SEC("xdp") int fwc_xdp(struct xdp_md *ctx)
{
	FWC_CLAIM(0x6677635f636c6d73);
	FWC_CLAIM(0);
	FWC_CLAIM(0);
	FWC_CLAIM(0);
	FWC_CLAIM(0);
	unsigned char *data = (unsigned char *)(long)ctx->data;
	return data[64] ? XDP_PASS : XDP_DROP;
}
char _license[] SEC("license") = "GPL";
"""

FOREIGN_C = r"""
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
SEC("xdp") int foreign(struct xdp_md *ctx) { return XDP_PASS; }
char _license[] SEC("license") = "GPL";
"""


def clang(source: str, out: Path) -> Path:
    c = out.with_suffix(".c")
    c.write_text(source)
    sh(
        "/usr/bin/clang-22", "-O2", "-g", "-target", "bpf",
        "-I/usr/include/x86_64-linux-gnu", "-c", str(c), "-o", str(out),
    )  # fmt: skip
    return out


def rejected_artifact(out: Path) -> Path:
    obj = clang(REJECTED_C, out / "rejected.o")
    with obj.open("rb") as f:
        insns = ELFFile(f).get_section_by_name("xdp").data_size // 8
    manifest = {
        "format": 2,
        "policy": {"name": "fail-good", "sha256": "0" * 64, "default_action": "allow",
                   "interfaces": {"include": [], "exclude": []}},
        "compiler": {"name": "test", "version": "0"},
        "strategy": "constants",
        "dry_run": False,
        "log_rate": 0,
        "program": {"name": "fwc_xdp", "section": "xdp", "insn_count": insns},
        "rules": {"id": [], "name": [], "priority": [], "action": []},
        "counters": {"map": "fwc_counters", "slots": {"index": [0], "name": ["default"]}},
        "maps": [{"name": "fwc_counters", "type": "percpu_array", "key_size": 4,
                  "value_size": 16, "max_entries": 1}],
        "seeds": [],
    }  # fmt: skip
    # the manifest must describe this program (artifact/claims.py): the verifier is the test
    obj.write_bytes(claims.write(obj.read_bytes(), claims.digest(codec.from_json(manifest), {})))
    manifest_file = out / "m.json"
    manifest_file.write_text(json.dumps(manifest, sort_keys=True))
    sh(
        "llvm-objcopy-22", "--add-section", f".fwc.manifest={manifest_file}",
        "--set-section-flags", ".fwc.manifest=noload,readonly", str(obj),
    )  # fmt: skip
    return obj


def snapshot(pair: Pair) -> tuple[str, list[str], str]:
    """Everything a failed apply must not change: status, the pin tree, the kernel's view."""
    status = json.dumps(pair.status(), sort_keys=True)
    tree = sorted(str(p.relative_to(pair.root)) for p in pair.root.rglob("*"))
    links = sh("ip", "-n", pair.ns_a, "-d", "link", "show").stdout
    return status, tree, links


@pytest.fixture
def pair() -> Iterator[Pair]:
    with veth_pair(subnet=3) as p:
        yield p


def test_failed_applies_leave_the_old_state(pair: Pair, tmp_path: Path) -> None:
    good = compile_policy(GOOD, tmp_path)
    assert pair.fwload("apply", str(good)).returncode == 0
    before = snapshot(pair)

    corrupt = tmp_path / "corrupt.o"
    corrupt.write_bytes(compile_policy(OTHER, tmp_path).read_bytes()[:600])
    result = pair.fwload("apply", str(corrupt))
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert str(corrupt) in result.stderr
    assert snapshot(pair) == before

    result = pair.fwload("apply", str(rejected_artifact(tmp_path)))
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "kernel refused" in result.stderr
    assert "invalid access to packet" in result.stderr  # the verifier's log is shown
    assert snapshot(pair) == before

    other = compile_policy(OTHER, tmp_path)
    result = pair.fwload("apply", str(other), "--expect-hash", "ab" * 32)
    assert result.returncode == 2 and "not the expected" in result.stderr
    assert snapshot(pair) == before


def test_foreign_program_is_refused_then_replaced_on_request(pair: Pair, tmp_path: Path) -> None:
    good = compile_policy(GOOD, tmp_path)
    assert pair.fwload("apply", str(good)).returncode == 0
    # a second interface in namespace a that another tool gave an XDP program
    extra = unique("fx")
    sh("ip", "-n", pair.ns_a, "link", "add", "name", extra, "type", "veth", "peer", "name",
       extra + "p")  # fmt: skip
    for name in (extra, extra + "p"):
        sh("ip", "-n", pair.ns_a, "link", "set", name, "up")
    pin = Path("/sys/fs/bpf") / unique("fwcforeign")
    try:
        sh("bpftool", "prog", "load", str(clang(FOREIGN_C, tmp_path / "foreign.o")), str(pin))
        sh("nsenter", f"--net=/run/netns/{pair.ns_a}", "bpftool", "net", "attach", "xdpdrv",
           "pinned", str(pin), "dev", extra)  # fmt: skip
        before = snapshot(pair)
        result = pair.fwload("apply", str(good))
        assert result.returncode == 2
        assert extra in result.stderr and "--replace-foreign" in result.stderr
        assert snapshot(pair) == before

        result = pair.fwload("apply", str(good), "--replace-foreign")
        assert result.returncode == 0, result.stderr
        assert f"{extra}: replaced-foreign (native)" in result.stdout
        attached = {i["name"]: i["via"] for p in pair.status()["policies"] for i in p["interfaces"]}
        assert attached == {pair.if_a: "link", extra: "netlink", extra + "p": "link"}
        # and the next apply swaps the netlink attachment atomically too
        assert pair.fwload("apply", str(good)).returncode == 0
        assert pair.attached()[extra] == "fail-good"
        assert pair.fwload("detach", "--all").returncode == 0
        show = sh("ip", "-n", pair.ns_a, "link", "show", extra).stdout
        assert "xdp" not in show
    finally:
        pin.unlink(missing_ok=True)
        subprocess.run(["ip", "-n", pair.ns_a, "link", "del", extra], check=False)
        assert not os.path.exists(pin)
