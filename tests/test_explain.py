"""`fwc explain` and the near-miss analysis behind it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from fwc.compiler.cli import main
from fwc.compiler.oracle.evaluate import XDP_DROP
from fwc.compiler.oracle.explain import describe_packet, explain
from fwc.compiler.oracle.frames import build_frame, fields_from_mapping
from fwc.compiler.policy.ir import Policy
from fwc.compiler.policy.normalize import normalize
from fwc.compiler.policy.source import load_file

EDGE = Path(__file__).resolve().parent.parent / "policies" / "edge-web.yaml"


def edge_policy() -> Policy:
    doc, _ = load_file(EDGE)
    assert doc is not None
    policy, _ = normalize(doc)
    assert policy is not None
    return policy


def misses(packet: dict[str, object]) -> dict[str, tuple[str, ...]]:
    result = explain(edge_policy(), build_frame(fields_from_mapping(packet)))
    return {m.rule.name: m.reasons for m in result.near_misses}


@pytest.mark.parametrize(
    ("packet", "rule", "reasons"),
    [
        (
            {"src": "10.0.0.1", "dport": 22},
            "allow_ssh_from_mgmt",
            ("source 10.0.0.1 not in 10.20.0.0/16, fd00:20::/48",),
        ),
        ({"src": "10.0.0.1", "dport": 23}, "allow_web", ("dport 23 not in 80, 443, 8000-8099",)),
        (
            {"proto": "udp", "src": "10.20.0.1", "dport": 22},
            "allow_ssh_from_mgmt",
            ("protocol udp != tcp",),
        ),
        (
            {"src": "10.0.0.1", "dport": 23, "flags": "SYN"},
            "allow_tcp_established",
            ("TCP flags SYN do not satisfy ACK",),
        ),
        (
            {"proto": "icmp", "icmp_type": 5},
            "allow_ping",
            ("ICMP type 5 not in 0, 3, 8, 11",),
        ),
        (
            {"src": "10.20.0.1", "dport": 22, "fragment": "non-first"},
            "allow_ssh_from_mgmt",
            ("a non-first fragment has no ports, TCP flags or ICMP type to match",),
        ),
        (
            {"proto": "icmpv6", "icmp_type": 200},
            "allow_icmpv6_essentials",
            ("ICMP type 200 not in 1, 2, 3, 4, 128, 129 and 4 more",),
        ),
    ],
)
def test_near_miss_reasons(packet: dict[str, object], rule: str, reasons: tuple[str, ...]) -> None:
    assert misses(packet)[rule] == reasons


def test_a_wrong_protocol_does_not_also_count_the_missing_header() -> None:
    found = misses({"proto": "udp", "src": "10.0.0.1", "dport": 23})
    assert found["allow_ping"] == ("protocol udp != icmp",)
    assert found["allow_web"] == ("protocol udp != tcp", "dport 23 not in 80, 443, 8000-8099")


def test_rules_that_miss_by_three_fields_are_not_near_misses() -> None:
    found = misses({"proto": "udp", "src": "10.0.0.1", "sport": 1, "dport": 23})
    assert "allow_ssh_from_mgmt" not in found  # protocol, source and dport


def test_only_rules_before_the_deciding_rule_are_listed() -> None:
    result = explain(edge_policy(), build_frame(fields_from_mapping({"dport": 443})))
    assert result.verdict.decided_by == "allow_web"
    assert [m.rule.name for m in result.near_misses] == ["drop_blocklist", "allow_ssh_from_mgmt"]


def test_malformed_frames_have_no_near_misses() -> None:
    result = explain(edge_policy(), build_frame(fields_from_mapping({}))[:20])
    assert (result.verdict.klass, result.verdict.xdp_action) == ("malformed", XDP_DROP)
    assert result.near_misses == ()


def fwc(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(["explain", str(EDGE), *argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_cli_text(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = fwc(capsys, "--src", "10.20.1.1", "--dport", "443", "--vlan", "7")
    lines = out.splitlines()
    assert code == 0
    assert lines[0] == "packet:  tcp 10.20.1.1:12345 -> 192.0.2.2:443 flags SYN vlan 7"
    assert lines[1].startswith("verdict: pass, by rule `allow_web` (priority 20, ")
    assert lines[1].endswith("edge-web.yaml:25:5), action allow")
    assert "rule `allow_ssh_from_mgmt` (priority 10, " in lines[4]
    assert lines[4].endswith(": dport 443 not in 22")


def test_cli_default_and_dry_run(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = fwc(capsys, "--src", "2001:db8::5", "--proto", "udp", "--dry-run")
    assert code == 0
    assert "verdict: pass (dry run: would drop), by the default action (deny)" in out


def test_cli_json(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = fwc(capsys, "--src", "198.51.100.1", "--proto", "icmp", "--json")
    doc = json.loads(out)
    assert code == 0
    assert (doc["verdict"], doc["class"], doc["rule"]["name"]) == ("drop", "rule", "drop_blocklist")
    assert doc["rule"]["line"] == 13
    assert doc["packet"]["src"] == "198.51.100.1"
    assert doc["near_misses"] == []


def test_cli_raw_frame(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = fwc(capsys, "--frame", "ffffffffffff 020000000001 0806 0001")
    assert code == 0
    assert "verdict: pass, by the non-IP rule" in out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--src", "10.0.0.1", "--dst", "::1"], "different address families"),
        (["--proto", "sctp"], "proto must be tcp, udp, icmp, icmpv6 or a number"),
        (["--frame", "zz"], "--frame must be hex bytes"),
        (["--frame", "00", "--dport", "1"], "--frame replaces the packet flags"),
    ],
)
def test_cli_usage_errors(
    capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    code, _, err = fwc(capsys, *argv)
    assert code == 2
    assert message in err


IFACES = Path(__file__).resolve().parent / "cases" / "interfaces.yaml"


def test_interface_near_misses_and_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    doc, _ = load_file(IFACES)
    assert doc is not None
    policy_file = tmp_path / "ifaces.yaml"
    policy_file.write_text(json.dumps({"name": "ifaces", **doc.value["policy"]}))
    args = ["explain", str(policy_file), "--dport", "22"]
    assert main([*args, "--interface", "eth1"]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0].endswith(" on eth1")
    assert "rule `ssh_mgmt` (priority 2, " in out
    assert ": interface eth1 does not pass eth0" in out
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "the ingress interface is not known, and the rule needs eth0" in out
    assert main([*args, "--interface", "eth0", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert (result["rule"]["name"], result["packet"]["interface"]) == ("ssh_mgmt", "eth0")


STATES = Path(__file__).resolve().parent / "cases" / "state.yaml"


def test_state_near_misses_and_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    doc, _ = load_file(STATES)
    assert doc is not None
    policy_file = tmp_path / "state.yaml"
    policy_file.write_text(json.dumps({"name": "state", **doc.value["policy"]}))
    args = ["explain", str(policy_file), "--dport", "80"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[1] == "state:   new"
    assert ": state new not in established, related" in out
    assert main([*args, "--state", "established", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert (result["rule"]["name"], result["packet"]["state"]) == ("replies", "established")
    assert result["packet"]["tracked"] is True
    echo = ["explain", str(policy_file), "--proto", "icmp", "--icmp-type", "0"]
    assert main([*echo, "--state", "established"]) == 0
    out = capsys.readouterr().out
    assert "state:   untracked (an ICMP message that is not an error quoting" in out
    assert "the packet is untracked (an ICMP message" in out
    assert "and the rule needs established, related" in out


def test_explain_shows_the_quoted_packet() -> None:
    fields = {"proto": "icmp", "icmp_type": 3, "inner": {"proto": "udp", "dport": 53}}
    frame = build_frame(fields_from_mapping(fields))
    result = explain(edge_policy(), frame, ct_state="related")
    assert describe_packet(result.verdict.packet) == (
        "icmp 192.0.2.1 -> 192.0.2.2 type 3 quoting udp 192.0.2.2:12345 -> 192.0.2.1:53"
    )
    assert result.verdict.packet.ct_state == "related"


def test_an_unknown_state_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["explain", str(EDGE), "--state", "open"])
    assert exc.value.code == 2
    assert "invalid choice: 'open'" in capsys.readouterr().err
