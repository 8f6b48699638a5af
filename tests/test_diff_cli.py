"""`fwc diff` end to end: formats, exit codes, --fail-on, --base, and the user's mistakes."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from fwc.compiler.cli import main

OLD = """\
version: 1
name: web
default_action: deny
rules:
  - name: allow_ssh
    priority: 10
    action: allow
    protocol: tcp
    source_cidrs: ["10.20.0.0/16"]
    destination_ports: [22]
  - name: allow_web
    priority: 20
    action: allow
    protocol: tcp
    destination_ports: [80, 443]
"""
WIDER_SSH = OLD.replace('["10.20.0.0/16"]', '["10.20.0.0/16", "192.0.2.0/24"]')
NO_WEB = OLD.replace("destination_ports: [80, 443]", "destination_ports: [443]")
REORDERED = """\
version: 1
name: web
default_action: deny
rules:
  - name: allow_web
    priority: 10
    action: allow
    protocol: tcp
    destination_ports: [80, 443]
  - name: allow_ssh
    priority: 20
    action: allow
    protocol: tcp
    source_cidrs: ["10.20.0.0/16"]
    destination_ports: [22]
"""


Capture = pytest.CaptureFixture[str]
Writer = Callable[[str, str], str]


def fwc(capsys: Capture, *argv: str) -> tuple[int, str, str]:
    code = main(["diff", *argv])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def write(tmp_path: Path) -> Writer:
    def make(name: str, text: str) -> str:
        path = tmp_path / name
        path.write_text(text)
        return str(path)

    return make


def test_text_names_region_rules_and_example(capsys: Capture, write: Writer) -> None:
    old, new = write("old.yaml", OLD), write("new.yaml", WIDER_SSH)
    code, out, _ = fwc(capsys, old, new)
    assert code == 1
    lines = out.splitlines()
    assert lines[0] == f"{old} -> {new}: 1 region(s) change verdict, 0 other change(s)"
    assert lines[1:] == [
        "  verdict: tcp 192.0.2.0/24 -> any dport 22",
        "    old: deny by the default action",
        f"    new: allow by rule `allow_ssh` ({new}:5:5)",
        '    example: {proto: "tcp", src: "192.0.2.1", dst: "0.0.0.1", sport: 12345, '
        'dport: 22, flags: "SYN"}',
    ]


def test_json_contract(capsys: Capture, write: Writer) -> None:
    old, new = write("old.yaml", OLD), write("new.yaml", NO_WEB)
    code, out, _ = fwc(capsys, old, new, "--format", "json")
    assert code == 1
    doc = json.loads(out)
    assert doc["other_changes"] == []
    change = doc["changes"][0]  # the IPv4 region; the IPv6 one follows
    assert change["match"] == {
        "protocol": "tcp",
        "source_cidrs": ["0.0.0.0/0"],
        "destination_cidrs": ["0.0.0.0/0"],
        "source_ports": [],
        "destination_ports": [80],
        "tcp_flags": None,
        "icmp_types": [],
        "fragment": "first-or-none",
    }
    assert change["old"] == {
        "verdict": "allow",
        "rule": "allow_web",
        "location": f"{old}:11:5",
        "rate_limit": None,
        "log": False,
    }
    assert change["new"]["verdict"] == "deny" and change["new"]["rule"] == "default"
    assert change["example"]["dport"] == 80 and change["newly_allowed"] is False


def test_both_families_are_listed(capsys: Capture, write: Writer) -> None:
    _, out, _ = fwc(capsys, write("a.yaml", OLD), write("b.yaml", NO_WEB), "--format", "json")
    regions = [c["match"]["source_cidrs"] for c in json.loads(out)["changes"]]
    assert sorted(regions) == [["0.0.0.0/0"], ["::/0"]]


def test_markdown_table(capsys: Capture, write: Writer) -> None:
    old, new = write("old.yaml", OLD), write("new.yaml", WIDER_SSH)
    code, out, _ = fwc(capsys, old, new, "--format", "markdown")
    assert code == 1
    assert out.startswith(f"## fwc diff\n\n### `{old}` → `{new}`\n\n1 region(s) change verdict")
    assert "| verdict | `tcp 192.0.2.0/24 -> any dport 22` | deny by the default action |" in out


def test_reorder_without_overlap_changes_nothing_but_counters(
    capsys: Capture, write: Writer
) -> None:
    code, out, _ = fwc(capsys, write("a.yaml", OLD), write("b.yaml", REORDERED), "--format", "json")
    doc = json.loads(out)
    assert code == 0 and doc["changes"] == []
    # ssh from 10.20/16 to port 22 is decided by allow_ssh in both: nothing at all changes
    assert doc["other_changes"] == []


def test_same_file_is_exit_0(capsys: Capture, write: Writer) -> None:
    path = write("a.yaml", OLD)
    code, out, _ = fwc(capsys, path, path)
    assert code == 0 and out.endswith("no packet changes its verdict, log or counter\n")


def test_fail_on_allowed(capsys: Capture, write: Writer) -> None:
    old, narrower = write("a.yaml", OLD), write("b.yaml", NO_WEB)
    assert fwc(capsys, old, narrower, "--fail-on", "allowed")[0] == 0
    assert fwc(capsys, narrower, old, "--fail-on", "allowed")[0] == 1


def test_renamed_rule_is_a_counter_change(capsys: Capture, write: Writer) -> None:
    renamed = OLD.replace("allow_ssh", "ssh_from_mgmt")
    code, out, _ = fwc(capsys, write("a.yaml", OLD), write("b.yaml", renamed), "--format", "json")
    doc = json.loads(out)
    assert code == 0 and doc["changes"] == []
    assert {c["kind"] for c in doc["other_changes"]} == {"counter"}
    assert {c["new"]["rule"] for c in doc["other_changes"]} == {"ssh_from_mgmt"}


def test_policy_with_errors_is_exit_1_with_findings(capsys: Capture, write: Writer) -> None:
    broken = write("bad.yaml", OLD.replace("action: allow", "action: maybe", 1))
    code, out, _ = fwc(capsys, write("a.yaml", OLD), broken)
    assert code == 1 and "bad.yaml:" in out and "error" in out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["missing.yaml", "missing2.yaml"], "missing.yaml: no such file"),
        (["only-one.yaml"], "give OLD and NEW policy files"),
    ],
)
def test_usage_errors_are_exit_2(capsys: Capture, argv: list[str], message: str) -> None:
    code, _, err = fwc(capsys, *argv)
    assert code == 2 and message in err


def _git(repo: Path, *argv: str) -> None:
    subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@example.org", *argv],
        cwd=repo,
        check=True,
        capture_output=True,
    )


def test_base_ref_over_a_directory(capsys: Capture, tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    (repo / "pol").mkdir(parents=True)
    (repo / "pol" / "web.yaml").write_text(OLD)
    (repo / "pol" / "web.cases.yaml").write_text("cases: []\n")
    _git(repo, "init", "-q")
    _git(repo, "add", ".")
    _git(repo, "commit", "-qm", "base")
    (repo / "pol" / "web.yaml").write_text(WIDER_SSH)
    code, out, _ = fwc(capsys, "--base", "HEAD", str(repo / "pol"), "--format", "json")
    assert code == 1
    [change] = json.loads(out)["changes"]
    assert change["old_file"] == "HEAD:pol/web.yaml"
    assert change["new"]["location"] == f"{repo / 'pol' / 'web.yaml'}:5:5"
    assert fwc(capsys, "--base", "no-such-ref", str(repo / "pol"))[0] == 2


def test_default_flip_is_one_change_for_the_unmatched_packets(
    capsys: Capture, write: Writer
) -> None:
    flipped = OLD.replace("default_action: deny", "default_action: allow")
    code, out, _ = fwc(capsys, write("a.yaml", OLD), write("b.yaml", flipped), "--format", "json")
    [change] = json.loads(out)["changes"]
    assert code == 1 and change["match"] == {"no_rule_matches": True}
    assert (change["old"]["verdict"], change["new"]["verdict"]) == ("deny", "allow")
    assert change["newly_allowed"] is True and change["old"]["rule"] == "default"
