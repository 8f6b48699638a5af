"""The lockout guard: a policy that would drop the management session is refused."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator
from pathlib import Path

import pytest

from fwc.loader.apply import lockout
from fwc.loader.errors import LoaderError
from tests.loader_netns import Pair, compile_policy, veth_pair

DENY_SSH = """
name: lock-deny
default_action: allow
rules:
  - {name: deny_ssh, priority: 10, action: deny, protocol: tcp, destination_ports: [22]}
"""

ALLOW_MGMT = """
name: lock-allow
default_action: deny
rules:
  - name: allow_ssh_from_mgmt
    priority: 10
    action: allow
    protocol: tcp
    source_cidrs: ["10.9.9.0/24"]
    destination_ports: [22]
"""


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("10.9.9.9 40000 10.0.0.1 22", ("10.9.9.9", 40000, "10.0.0.1", 22)),
        ("fd00::9 40000 fd00::1 2222", ("fd00::9", 40000, "fd00::1", 2222)),
        ("::ffff:10.9.9.9 40000 10.0.0.1 22", ("10.9.9.9", 40000, "10.0.0.1", 22)),
        ("127.0.0.1 40000 127.0.0.1 22", None),
    ],
)
def test_ssh_connection_is_parsed(value: str, expected: tuple[str, int, str, int] | None) -> None:
    session = lockout.from_ssh_connection(value)
    if expected is None:
        assert session is None
    else:
        assert session is not None
        got = (str(session.client), session.client_port, str(session.server), session.server_port)
        assert got == expected


@pytest.mark.parametrize("bad", ["10.9.9.9", "10.9.9.9:0", "nope:22", ":22", "[fd00::1]:x"])
def test_bad_keep_access_is_a_clear_error(bad: str) -> None:
    with pytest.raises(LoaderError, match="--keep-access"):
        lockout.from_keep_access(bad, [])


def test_keep_access_targets_each_local_address_of_its_family() -> None:
    local = [ipaddress.ip_address(a) for a in ("10.0.0.1", "10.0.1.1", "fd00::1")]
    sessions = lockout.from_keep_access("10.9.9.9:22", local)
    assert [str(s.server) for s in sessions] == ["10.0.0.1", "10.0.1.1"]
    assert [str(s.server) for s in lockout.from_keep_access("[fd00::9]:22", [])] == ["::"]


@pytest.fixture
def pair() -> Iterator[Pair]:
    with veth_pair(subnet=2) as p:
        yield p


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    out = tmp_path_factory.mktemp("lockout")
    return {
        "deny": compile_policy(DENY_SSH, out),
        "allow": compile_policy(ALLOW_MGMT, out),
    }


@pytest.mark.kernel
@pytest.mark.netns
def test_lockout_refusal_force_and_allowed_session(pair: Pair, artifacts: dict[str, Path]) -> None:
    ssh = {"SSH_CONNECTION": f"10.9.9.9 40000 {pair.ip_a} 22"}
    refused = pair.fwload("apply", str(artifacts["deny"]), env=ssh)
    assert refused.returncode == 1
    assert "SSH_CONNECTION" in refused.stderr and "10.9.9.9:40000" in refused.stderr
    assert "--force" in refused.stderr
    assert pair.attached() == {}

    keep = pair.fwload("apply", str(artifacts["deny"]), "--keep-access", "10.9.9.9:22")
    assert keep.returncode == 1 and "--keep-access 10.9.9.9:22" in keep.stderr
    assert pair.attached() == {}

    forced = pair.fwload("apply", str(artifacts["deny"]), "--force", env=ssh)
    assert forced.returncode == 0, forced.stderr
    assert pair.attached() == {pair.if_a: "lock-deny"}

    allowed = pair.fwload("apply", str(artifacts["allow"]), env=ssh)
    assert allowed.returncode == 0, allowed.stderr
    assert "lockout check: 10.9.9.9:40000" in allowed.stdout
    assert pair.attached() == {pair.if_a: "lock-allow"}
