"""`fwc import list`: plain address lists in each publisher's style become one set that a
policy denies; bad lines are findings with their line numbers."""

from __future__ import annotations

from pathlib import Path

import pytest

from fwc.compiler.check import CheckOptions, check_file
from fwc.compiler.cli import main
from fwc.compiler.policy.findings import Severity
from fwc.compiler.policy.ir import Action
from fwc.compiler.policy.normalize import parse_address

LISTS = Path("tests/import/lists")


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(argv)
    out = capsys.readouterr()
    return code, out.out, out.err


def set_entries(text: str) -> list[str]:
    return [line.split("- ", 1)[1] for line in text.splitlines() if line.startswith("    - ")]


@pytest.mark.parametrize(
    ("fixture", "entries"),
    [
        # firehol: a `#` header, CIDRs and bare addresses
        (
            "firehol_level1.netset",
            ["0.0.0.0/8", "1.10.16.0/20", "1.19.0.0/16", "5.188.10.179/32", "192.0.2.0/24"],
        ),
        # Spamhaus DROP: `;` comments, also after the CIDR
        ("spamhaus_drop.txt", ["1.10.16.0/20", "2.56.192.0/22", "5.134.128.0/19"]),
        # crowdsec: bare addresses of both families, a repeat dropped
        (
            "crowdsec.txt",
            ["198.51.100.7/32", "2001:db8:bad::1/128", "2001:db8:beef::/48", "203.0.113.9/32"],
        ),
    ],
)
def test_each_style(
    fixture: str, entries: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "block.yaml"
    code, _, err = run(["import", "list", str(LISTS / fixture), "-o", str(out)], capsys)
    assert code == 0, err
    assert set_entries(out.read_text()) == entries


def test_lists_merge_into_one_policy_that_denies_them(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "edge-block.yaml"
    files = [str(LISTS / f) for f in ("firehol_level1.netset", "spamhaus_drop.txt")]
    code, _, err = run(
        ["import", "list", *files, "--set", "drop", "--priority", "5", "-o", str(out)], capsys
    )
    assert code == 0, err
    text = out.read_text()
    assert "# 1 duplicate entries dropped" in text  # 1.10.16.0/20 is in both
    result = check_file(out, CheckOptions())
    assert not [f for f in result.findings if f.severity is Severity.ERROR]
    policy = result.policy
    assert policy is not None
    (rule,) = policy.rules
    assert (rule.name, rule.priority, rule.action) == ("deny_drop", 5, Action.DENY)
    assert len(rule.sources) == 7
    assert dict(policy.sets)["drop"] == rule.sources


def test_bad_lines_are_findings_with_line_numbers(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "b.yaml"
    broken = str(LISTS / "broken.txt")
    code, _, err = run(["import", "list", broken, "-o", str(out)], capsys)
    assert code == 1
    assert not out.exists()
    assert f"{broken}:3: error: '192.0.2.300' is not" in err
    assert f"{broken}:4: warning: '10.1.2.3/8' has host bits set" in err
    assert f"{broken}:5: error: 'not-an-address' is not" in err  # the `;` comment is gone
    assert f"{broken}:6: error: '2001:db8::/129' is not" in err
    assert "nothing written" in err

    code, _, err = run(["import", "list", broken, "--lossy", "-o", str(out)], capsys)
    assert code == 0
    assert (
        f"{broken}:3: error: '192.0.2.300' is not an IPv4 or IPv6 address or CIDR [left out]" in err
    )
    text = out.read_text()
    assert "THIS SET DIFFERS FROM THE SOURCE" in text
    assert set_entries(text) == ["192.0.2.0/24", "10.0.0.0/8"]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--set", "9bad"], "not a set name"),
        (["--priority", "70000"], "not in 0..65535"),
        (["--name", "Bad Name"], "not a policy name"),
        (["--ipset", "tests/import/lists/crowdsec.txt"], "no --ipset"),
    ],
)
def test_bad_options(argv: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(["import", "list", str(LISTS / "crowdsec.txt"), *argv], capsys)
    assert code == 2
    assert message in err and "Traceback" not in err


def test_a_list_of_comments_only_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    empty = tmp_path / "empty.txt"
    empty.write_text("# nothing today\n; still nothing\n\n")
    code, _, err = run(["import", "list", str(empty)], capsys)
    assert code == 2
    assert "no address" in err


def test_written_entries_read_back_as_the_same_addresses(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, text, _ = run(["import", "list", str(LISTS / "crowdsec.txt")], capsys)
    assert code == 0
    for entry in set_entries(text):
        parsed = parse_address(entry)
        assert parsed is not None and str(parsed[0]) == entry and not parsed[1]
