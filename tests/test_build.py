"""The build: determinism, the manifest section, the cache, tool errors, and --verify."""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import sys
from pathlib import Path

import pytest
from elftools.elf.constants import SH_FLAGS
from elftools.elf.elffile import ELFFile

from fwc.artifact.codec import decode, encode
from fwc.artifact.layout import MANIFEST_SECTION as SECTION
from fwc.compiler.backend import build
from fwc.compiler.backend.build import compile_policy
from fwc.compiler.backend.manifest import build_manifest, insn_count
from fwc.compiler.backend.plan import make_plan
from fwc.compiler.backend.render import render_mapped
from fwc.compiler.backend.toolchain import find_toolchain
from fwc.compiler.backend.verify import Rejected, last_source_line, verify
from fwc.compiler.cli import main
from tests.compile_helpers import policy_file
from tests.test_render import HOSTILE

ROOT = Path(__file__).resolve().parent.parent
EDGE = ROOT / "policies" / "edge-web.yaml"
BENCH_POLICIES = ROOT / "bench" / "policies.py"


def test_two_builds_are_byte_identical(tmp_path: Path) -> None:
    policy = policy_file(str(EDGE))
    a = compile_policy(policy, output=tmp_path / "a.o")
    b = compile_policy(policy, output=tmp_path / "sub" / "b.o", cache_dir=tmp_path / "cache")
    c = compile_policy(policy, output=tmp_path / "c.o", cache_dir=tmp_path / "cache")
    assert not b.cached and c.cached
    assert a.path.read_bytes() == b.path.read_bytes() == c.path.read_bytes()
    assert str(tmp_path).encode() not in a.path.read_bytes()


def test_manifest_section(tmp_path: Path) -> None:
    policy = policy_file(str(EDGE))
    result = compile_policy(policy, output=tmp_path / "fw.o", dry_run=True)
    with result.path.open("rb") as f:
        elf = ELFFile(f)
        section = elf.get_section_by_name(SECTION)
        assert section["sh_type"] == "SHT_PROGBITS"
        assert section["sh_flags"] & SH_FLAGS.SHF_ALLOC == 0
        data = section.data()
        xdp_size = elf.get_section_by_name("xdp")["sh_size"]
    manifest = json.loads(data)
    assert manifest == result.manifest
    assert data == encode(decode(data))
    assert manifest["program"] == {
        "name": "fwc_edge_web",
        "section": "xdp",
        "insn_count": xdp_size // 8,
    }
    assert manifest["policy"]["sha256"] == policy.source_sha256
    assert manifest["policy"]["interfaces"]["exclude"] == ["docker*", "veth*"]
    assert manifest["strategy"] == "constants" and manifest["dry_run"] is True
    rules = manifest["rules"]
    assert [rules[field][0] for field in ("id", "name", "priority", "action")] == [
        0,
        "drop_blocklist",
        5,
        "deny",
    ]
    assert manifest["counters"]["slots"]["index"] == list(range(len(policy.rules) + 4))
    slots = manifest["counters"]["slots"]["name"]
    assert slots[-4:] == ["default", "malformed", "non_ip", "would_drop"]
    assert manifest["maps"] == [
        {
            "name": "fwc_counters",
            "type": "percpu_array",
            "key_size": 4,
            "value_size": 16,
            "max_entries": 11,
        },
        {
            "name": "fwc_scratch",
            "type": "percpu_array",
            "key_size": 4,
            "value_size": 56,
            "max_entries": 1,
        },
    ]
    assert manifest["compiler"]["clang"] == find_toolchain().clang_version


def test_manifest_has_no_timestamps_or_paths() -> None:
    plan = make_plan(policy_file(str(EDGE)), "constants", False)
    text = encode(build_manifest(plan, "22.1.8", 100)).decode()
    assert "/" not in text.replace("edge-web.yaml", "")


def test_hostile_names_compile(tmp_path: Path) -> None:
    policy = policy_file(str(EDGE))
    rule = dataclasses.replace(policy.rules[0], name=HOSTILE, description=HOSTILE)
    policy = dataclasses.replace(policy, name=HOSTILE, rules=(rule, *policy.rules[1:]))
    result = compile_policy(policy, output=tmp_path / "fw.o")
    assert "evil();" not in result.c_source


def test_missing_clang_is_exit_2_with_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("FWC_CLANG", "/nonexistent")
    assert main(["compile", str(EDGE), "-o", str(tmp_path / "fw.o"), "--no-cache"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "clang not found" in err


def test_failing_clang_is_exit_2(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    fake = tmp_path / "clang-99"
    fake.write_text(
        "#!/bin/sh\ncase $1 in --version) echo 'clang version 99.0.0';;\n"
        "*) echo 'fwc_xdp.c:1:1: error: boom' >&2; exit 1;; esac\n"
    )
    fake.chmod(0o755)
    monkeypatch.setenv("FWC_CLANG", str(fake))
    monkeypatch.setenv("PATH", f"{tmp_path}:/usr/bin")
    (tmp_path / "llvm-objcopy-99").symlink_to("/usr/bin/llvm-objcopy-22")
    assert main(["compile", str(EDGE), "-o", str(tmp_path / "fw.o"), "--no-cache"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("fwc compile: clang failed to build the generated program")
    assert err.count("\n") == 1


def test_policy_findings_are_exit_1(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    policy = tmp_path / "p.yaml"
    policy.write_text(
        "name: p\nrules:\n  - {name: r, priority: 1, action: allow, log: true}\n"
        "  - {name: r, priority: 2}\n"
    )
    assert main(["compile", str(policy), "-o", str(tmp_path / "fw.o")]) == 1
    out = capsys.readouterr().out
    assert "FWC020" in out
    policy.write_text("name: p\nrules:\n  - {name: r, priority: 1, action: allow, log: true}\n")
    out_args = ["-o", str(tmp_path / "fw.o"), "--strategy", "tables", "--no-gate"]
    assert main(["compile", str(policy), *out_args]) == 1
    assert "FWC050" in capsys.readouterr().out
    assert not (tmp_path / "fw.o").exists()


def test_cli_writes_artifact_and_c(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out, c = tmp_path / "fw.o", tmp_path / "fw.c"
    assert main(["compile", str(EDGE), "-o", str(out), "--emit-c", str(c), "--no-cache"]) == 0
    assert out.is_file() and "rule 2: allow_web" in c.read_text()
    assert "strategy constants, 7 rules" in capsys.readouterr().out


def test_missing_policy_is_usage_error(tmp_path: Path) -> None:
    assert main(["compile", str(tmp_path / "nope.yaml"), "-o", str(tmp_path / "x.o")]) == 2


def test_source_map_covers_each_rule_block() -> None:
    rendered = render_mapped(make_plan(policy_file(str(EDGE)), "constants", False))
    lines = rendered.source.splitlines()
    assert [r.rule_id for r in rendered.rules] == list(range(7))
    for block in rendered.rules:
        assert lines[block.first - 1].startswith(f"\t/* rule {block.rule_id}: ")
        assert rendered.rule_at(block.first) == rendered.rule_at(block.last) == block.rule_id
    assert rendered.rule_at(1) is None
    assert rendered.rule_at(rendered.rules[-1].last + 1) is None
    assert rendered.rule_at(len(lines)) is None


def test_last_source_line_of_a_verifier_log() -> None:
    log = "0: (b7) r0 = 0\n; if (x) @ fwc_xdp.c:12\n1: ...\n; y = 1; @ fwc_parse.h:40\n"
    log += "; return z; @ fwc_xdp.c:31\ninvalid access to packet\n"
    assert last_source_line(log) == 31
    assert last_source_line("nothing here") is None


@pytest.mark.kernel
def test_verify_thousand_rules(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from tests.bigpolicy import big_policy_text

    policy = tmp_path / "big.yaml"
    policy.write_text(big_policy_text(1000))
    out = tmp_path / "big.o"
    args = ["compile", str(policy), "-o", str(out), "--strategy", "constants", "--no-gate"]
    assert main([*args, "--verify", "--no-cache"]) == 0
    printed = capsys.readouterr().out
    assert "1000 rules" in printed and "verified by the kernel" in printed
    manifest = json.loads(ELFFile(out.open("rb")).get_section_by_name(SECTION).data())
    assert manifest["rules"]["id"] == list(range(1000))
    assert manifest["program"]["insn_count"] > 10_000


@pytest.mark.kernel
def test_verify_thousand_realistic_rules(tmp_path: Path) -> None:
    """The benchmark's policy mixes flags, ICMP types, nets and port lists: it once ran
    the verifier out of budget while the uniform big_policy verified."""
    spec = importlib.util.spec_from_file_location("bench_policies", BENCH_POLICIES)
    assert spec is not None and spec.loader is not None
    bench_policies = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = bench_policies  # its dataclasses look their module up
    spec.loader.exec_module(bench_policies)
    policy = tmp_path / "realistic.yaml"
    policy.write_text(bench_policies.make_policy_yaml(1000, 1))
    out = tmp_path / "realistic.o"
    args = ["compile", str(policy), "-o", str(out), "--strategy", "constants", "--no-gate"]
    assert main([*args, "--verify", "--no-cache"]) == 0


@pytest.mark.kernel
def test_verifier_rejection_names_the_rule(tmp_path: Path) -> None:
    policy = policy_file(str(EDGE))
    plan = make_plan(policy, "constants", False)
    rendered = render_mapped(plan)
    source = rendered.source.replace(
        "slot = 2;", "slot = 2 + *(volatile const __u8 *)(data + 60000);"
    )
    toolchain = find_toolchain()
    obj = build._clang(source, toolchain)
    out = tmp_path / "bad.o"
    manifest = build_manifest(plan, "x", insn_count(obj))
    build._embed(toolchain, obj, plan, manifest, out)
    outcome = verify(out, rendered, policy)
    assert isinstance(outcome, Rejected)
    assert outcome.finding.id == "FWC052" and outcome.finding.rule == "allow_web"
    assert "allow_web" in outcome.finding.message and outcome.log_tail


def test_insn_count_counts_the_functions_the_program_calls(tmp_path: Path) -> None:
    """The tables program keeps each generation's classification in a function of its own
    (.text): the manifest counts those instructions with the program section's."""
    result = compile_policy(policy_file(str(EDGE)), output=tmp_path / "t.o", strategy="tables")
    with result.path.open("rb") as f:
        elf = ELFFile(f)
        xdp, text = (elf.get_section_by_name(n)["sh_size"] // 8 for n in ("xdp", ".text"))
    assert text > 0
    assert result.manifest["program"]["insn_count"] == xdp + text
