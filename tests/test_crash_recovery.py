"""`kill -9` at every step of both apply paths (FWC_KILL_AT): the next command recovers from
what the kernel runs, reports the truth, and traffic is filtered by the program the pins
describe."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from fwc.loader import faults
from fwc.loader.reader.artifact import read_artifact
from tests.loader_netns import Pair, sh, udp_delivered, veth_pair
from tests.test_live_update import FIRST, SECOND, compile_tables

pytestmark = [pytest.mark.kernel, pytest.mark.netns]

SIGKILL_EXIT = -9


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    out = tmp_path_factory.mktemp("crash")
    return compile_tables(FIRST, out), compile_tables(SECOND, out)


def xdp_prog_id(pair: Pair) -> int:
    out = json.loads(sh("ip", "-n", pair.ns_a, "-d", "-j", "link", "show", pair.if_a).stdout)
    return int(out[0].get("xdp", {}).get("prog", {}).get("id", 0))


def consistent(pair: Pair, first: Path, second: Path, traffic: bool = True) -> str:
    """Check the state after recovery; which artifact ("first" or "second") is in force."""
    state = pair.status()
    (policy,) = state["policies"]
    assert [i["name"] for i in policy["interfaces"]] == [pair.if_a]
    assert policy["stale_links"] == []
    # the interface runs the very program the pins describe
    assert xdp_prog_id(pair) == policy["prog_id"] != 0
    assert not [p.name for p in pair.root.iterdir() if p.name.startswith("_")]
    by_hash = {
        read_artifact(first).sha256: "first",
        read_artifact(second).sha256: "second",
    }
    in_force = by_hash[policy["sha256"]]
    if not traffic:
        return in_force
    # real packets: 5354 passes under the first policy and is dropped under the second
    assert udp_delivered(pair, 5354, 5) == (5 if in_force == "first" else 0)
    assert udp_delivered(pair, 5355, 5) == 0
    return in_force


@pytest.mark.parametrize(
    ("point", "flags"),
    [(p, ("--no-live-update",)) for p in faults.SWAP_POINTS]
    + [(p, ()) for p in faults.LIVE_POINTS],
)
def test_a_kill_at_each_step_is_recovered(
    artifacts: tuple[Path, Path], point: str, flags: tuple[str, ...]
) -> None:
    first, second = artifacts
    with veth_pair(subnet=14) as pair:
        assert pair.fwload("apply", str(first)).returncode == 0
        killed = pair.fwload("apply", str(second), *flags, env={faults.KILL_ENV: point})
        assert killed.returncode == SIGKILL_EXIT, (killed.returncode, killed.stderr)

        status = pair.fwload("status")
        assert status.returncode == 0, status.stderr
        in_force = consistent(pair, first, second)
        # a kill after the commit point keeps the new policy; before it, the old one
        committed = point not in (
            "swap:pinned",
            "live:idle-written",
            "live:flipped",
            "live:digests",
        )
        assert in_force == ("second" if committed else "first"), status.stdout
        # what only needed its leftovers swept is not worth a line; the rest says what it did
        silent = ("commit:renamed", "swap:committed", "live:idle-written", "live:meta-renamed")
        assert ("recovered first:" in status.stdout) == (point not in silent), status.stdout

        again = pair.fwload("apply", str(second), *flags)
        assert again.returncode == 0, again.stderr
        assert consistent(pair, first, second, traffic=False) == "second"
        back = pair.fwload("apply", str(first))
        assert back.returncode == 0, back.stderr
        assert consistent(pair, first, second, traffic=False) == "first"


def test_pins_of_the_old_program_on_a_link_running_another_are_put_right(
    artifacts: tuple[Path, Path],
) -> None:
    """The state an older fw-load left after a kill right after the link swap: the staging
    pins gone, the link running a program no pin describes. Recovery puts the link back on
    the pinned program (what status and stats describe)."""
    first, second = artifacts
    with veth_pair(subnet=14) as pair:
        assert pair.fwload("apply", str(first)).returncode == 0
        killed = pair.fwload(
            "apply", str(second), "--no-live-update", env={faults.KILL_ENV: "swap:link-swapped"}
        )
        assert killed.returncode == SIGKILL_EXIT
        (staging,) = [p for p in pair.root.iterdir() if p.name.startswith("_staging-")]
        # what the old leftover sweep did: unpin the staging directory, new program and all
        shutil.rmtree(staging)
        status = pair.fwload("status")
        assert "put back on it" in status.stdout, status.stdout
        assert consistent(pair, first, second) == "first"


@pytest.mark.parametrize(
    ("point", "flags"),
    [("swap:link-swapped", ("--no-live-update",)), ("live:flipped", ())],
)
def test_the_next_apply_recovers_first_and_says_so(
    artifacts: tuple[Path, Path], point: str, flags: tuple[str, ...]
) -> None:
    first, second = artifacts
    with veth_pair(subnet=14) as pair:
        assert pair.fwload("apply", str(first)).returncode == 0
        killed = pair.fwload("apply", str(second), *flags, env={faults.KILL_ENV: point})
        assert killed.returncode == SIGKILL_EXIT
        # the apply that follows sees the truth first, then does what it was asked
        done = pair.fwload("apply", str(first), "--json")
        assert done.returncode == 0, done.stderr
        report = json.loads(done.stdout)
        assert len(report["recovered"]) == 1, report
        assert consistent(pair, first, second) == "first"
