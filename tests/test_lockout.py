"""The lockout guard: a policy that would drop the management session is refused."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator
from pathlib import Path

import pytest

from fwc.loader.apply import lockout
from fwc.loader.errors import LoaderError
from tests.loader_netns import Pair, compile_policy, veth_pair
from tests.test_live_update import compile_tables

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


DENY_PSH = """
name: lock-psh
default_action: allow
rules:
  - {name: deny_psh, priority: 10, action: deny, protocol: tcp, tcp_flags: "PSH"}
"""

DENY_MGMT_V4 = """
name: lock-v4
default_action: allow
rules:
  - name: deny_mgmt_ssh
    priority: 10
    action: deny
    protocol: tcp
    source_cidrs: ["10.9.9.9/32"]
    destination_ports: [22]
"""

RATE_SSH = """
name: lock-rate
default_action: allow
rules:
  - name: throttle_ssh
    priority: 10
    action: rate_limit
    protocol: tcp
    destination_ports: [22]
    rate_limit_pps: 1
"""


def test_a_mapped_session_is_probed_as_ipv4() -> None:
    session = lockout.from_ssh_connection("::ffff:10.9.9.9 40000 ::ffff:10.0.0.1 22")
    assert session is not None
    assert (session.client.version, str(session.client), str(session.server)) == (
        4,
        "10.9.9.9",
        "10.0.0.1",
    )
    (kept,) = lockout.from_keep_access("[::ffff:10.9.9.9]:22", [ipaddress.ip_address("10.0.0.1")])
    assert (str(kept.client), str(kept.server)) == ("10.9.9.9", "10.0.0.1")


@pytest.mark.kernel
@pytest.mark.netns
@pytest.mark.parametrize(
    ("policy", "client", "said", "strategy"),
    [
        (DENY_PSH, "10.9.9.9", "drop established session (PSH|ACK)", "constants"),
        (DENY_PSH, "10.9.9.9", "drop established session (PSH|ACK)", "tables"),
        (DENY_MGMT_V4, "::ffff:10.9.9.9", "drop new connection (SYN) of 10.9.9.9:40000", "tables"),
        # the tables strategy has no rate_limit yet (FWC050)
        (RATE_SSH, "10.9.9.9", "rate-limit new connection (SYN)", "constants"),
    ],
)
def test_what_an_established_session_sends_is_probed(
    pair: Pair, tmp_path: Path, policy: str, client: str, said: str, strategy: str
) -> None:
    artifact = compile_tables(policy, tmp_path, strategy=strategy)
    server = f"::ffff:{pair.ip_a}" if client.startswith("::ffff:") else pair.ip_a
    ssh = {"SSH_CONNECTION": f"{client} 40000 {server} 22"}
    refused = pair.fwload("apply", str(artifact), env=ssh)
    assert refused.returncode == 1, refused.stderr
    assert said in refused.stderr
    assert pair.attached() == {}
    forced = pair.fwload("apply", str(artifact), "--force", env=ssh)
    assert forced.returncode == 0, forced.stderr
    assert len(pair.attached()) == 1
    if strategy == "tables":
        # the same check on the live-update path: the probe runs the idle generation
        again = pair.fwload("apply", str(artifact), env=ssh)
        assert again.returncode == 1, again.stderr
        assert said in again.stderr
        forced = pair.fwload("apply", str(artifact), "--force", "--json", env=ssh)
        assert forced.returncode == 0 and '"live-update"' in forced.stdout, forced.stderr
