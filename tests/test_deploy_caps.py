"""The capabilities the DaemonSet and the systemd unit grant are the narrowest that work:
fw-load applies, replaces and reads a policy with exactly them, and fails without either.

CAP_SYS_ADMIN also passes the kernel's checks for CAP_BPF and CAP_PERFMON, so those two add
nothing beside it; without it (CAP_BPF and CAP_PERFMON instead) a first apply works but
replacing a running policy does not, since that opens the program by id.

Each run is fw-load under `capsh --drop` (root with a reduced bounding set) inside a test
namespace with its own veth pair and pin root."""

from __future__ import annotations

import configparser
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from tests.loader_netns import FWLOAD, Pair, compile_policy, sh, veth_pair

pytestmark = [pytest.mark.kernel, pytest.mark.netns]

REPO = Path(__file__).resolve().parent.parent
POLICY = """
name: caps-probe
default_action: allow
rules:
  - {name: deny_udp_5354, priority: 20, action: deny, protocol: udp, destination_ports: [5354]}
"""


def daemonset_caps() -> set[str]:
    text = (REPO / "deploy/kubernetes/base/daemonset.yaml").read_text()
    pod = yaml.safe_load(text)["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    return {f"cap_{c.lower()}" for c in container["securityContext"]["capabilities"]["add"]}


def unit_caps() -> set[str]:
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.read_string((REPO / "deploy/systemd/fw-load.service").read_text())
    return {c.lower() for c in parser["Service"]["CapabilityBoundingSet"].split()}


def all_caps() -> set[str]:
    out = sh("capsh", "--print").stdout
    (line,) = [x for x in out.splitlines() if x.startswith("Bounding set =")]
    return set(line.split("=", 1)[1].strip().split(","))


@pytest.fixture(scope="module")
def artifact(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return compile_policy(POLICY, tmp_path_factory.mktemp("caps"))


@pytest.fixture
def pair() -> Iterator[Pair]:
    with veth_pair(subnet=7) as p:
        yield p


def with_caps(pair: Pair, keep: set[str], *args: str) -> tuple[int, str]:
    """fw-load ARGS in namespace a, with only `keep` left in the bounding set."""
    drop = ",".join(sorted(all_caps() - keep))
    argv = " ".join([FWLOAD, *args, "--pin-root", str(pair.root)])
    proc = sh(*pair.nsenter_a("capsh", f"--drop={drop}", "--", "-c", argv), check=False)
    return proc.returncode, proc.stdout + proc.stderr


def lifecycle(pair: Pair, artifact: Path, keep: set[str]) -> list[int]:
    """Exit codes of a first apply and of a second one that replaces it."""
    apply = ("apply", "--no-daemon", "--force", str(artifact))
    return [with_caps(pair, keep, *apply)[0] for _ in range(2)]


def test_deployments_grant_the_same_capabilities() -> None:
    assert daemonset_caps() == unit_caps() == {"cap_net_admin", "cap_sys_admin"}


def test_fw_load_works_with_exactly_these(pair: Pair, artifact: Path) -> None:
    assert lifecycle(pair, artifact, daemonset_caps()) == [0, 0]
    code, out = with_caps(pair, daemonset_caps(), "stats")
    assert code == 0 and "deny_udp_5354" in out
    assert set(pair.attached()) == {pair.if_a}


@pytest.mark.parametrize(
    ("keep", "codes"),
    [
        ({"cap_sys_admin"}, [2, 2]),
        ({"cap_net_admin"}, [2, 2]),
        ({"cap_net_admin", "cap_bpf"}, [2, 2]),
        # CAP_BPF and CAP_PERFMON in place of CAP_SYS_ADMIN would load but not replace a
        # policy (tests/test_privileges.py): fw-load refuses before it starts either
        ({"cap_net_admin", "cap_bpf", "cap_perfmon"}, [2, 2]),
    ],
)
def test_fw_load_fails_with_less(
    pair: Pair, artifact: Path, keep: set[str], codes: list[int]
) -> None:
    assert lifecycle(pair, artifact, keep) == codes


def test_with_less_fw_load_says_what_it_needs(pair: Pair, artifact: Path) -> None:
    code, out = with_caps(
        pair, {"cap_bpf", "cap_net_admin"}, "apply", "--no-daemon", "--force", str(artifact)
    )
    assert code == 2 and "CAP_SYS_ADMIN and CAP_NET_ADMIN" in out


def test_fw_load_works_inside_the_units_confinement(pair: Pair, artifact: Path) -> None:
    """fw-load.service's ProtectSystem=strict, ProtectHome and ReadWritePaths, emulated in a
    private mount namespace: the system, home and code read-only, the pins writable; with
    the unit's capabilities it still applies and replaces a policy."""
    read_only = sorted(
        {"/usr", "/etc", "/var", "/opt", "/root", "/home", str(REPO), sys.prefix}
        | {sys.base_prefix, str(artifact.parent)}
    )
    binds = "\n".join(
        f"[ -d {d} ] && mount --bind -o ro {d} {d}" for d in read_only if Path(d).is_dir()
    )
    drop = ",".join(sorted(all_caps() - unit_caps()))
    apply = f"{FWLOAD} apply --no-daemon --force --pin-root {pair.root} {artifact}"
    script = f"""set -e
mount --make-rprivate /
{binds}
! touch /usr/.fwc-write-probe 2>/dev/null
! touch {artifact.parent}/.fwc-write-probe 2>/dev/null
exec nsenter --net=/run/netns/{pair.ns_a} capsh --drop={drop} -- -c '{apply} && {apply}'
"""
    env = pair.fwload_env()
    proc = subprocess.run(
        ["unshare", "--mount", "bash", "-c", script],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "replaced" in proc.stdout
    assert set(pair.attached()) == {pair.if_a}
