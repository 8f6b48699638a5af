"""The compiled program against the reference evaluator with the ingress interface as an input:
BPF_PROG_TEST_RUN with ctx_in's ingress_ifindex, in a namespace of interfaces with known names."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fwc.compiler.backend.build import compile_policy
from fwc.compiler.oracle.evaluate import evaluate
from fwc.compiler.policy.ir import Policy
from tests.loader_netns import sh, unique
from tests.strategies import frames, policy_documents, policy_from_document, valid_frames

pytestmark = [pytest.mark.kernel, pytest.mark.netns]

# veth pairs inside the test's namespace; with its loopback, the names rules see
PAIRS = (("eth0", "wg0"), ("eth1", "lan5"), ("wgx", "e9"))
NAMES = ("lo", *(name for pair in PAIRS for name in pair))
PATTERNS = ("eth0", "eth*", "wg*", "*0", "lan?", "[ew]*", "lo", "e[0-9]")
FRAMES_PER_POLICY = 16

# Runs inside the namespace: loads the artifact, fills its interface-class map as fw-load
# does, and prints the verdict of each (frame, interface) as JSON.
RUNNER = """
import json, sys
from fwc.artifact.ifclass import IFACES_HASH_MAP
from fwc.loader.kernel.program import LoadedProgram
from fwc.loader.node import ifclasses, netlink
jobs = json.load(sys.stdin)
by_name = {i.name: i.index for i in netlink.list_interfaces()}
with LoadedProgram.load(sys.argv[1]) as prog:
    table = prog.spec.manifest.interface_classes
    if table is not None:
        maps = prog.map_fd(table.map), prog.map_fd(IFACES_HASH_MAP)
        ifclasses.sync(*maps, table, netlink.list_interfaces())
    out = [
        prog.test_run(bytes.fromhex(frame), ingress_ifindex=by_name[name]).retval
        for frame, name in jobs
    ]
print(json.dumps(out))
"""


@pytest.fixture(scope="module")
def namespace() -> Iterator[str]:
    ns = f"fwcki{unique('')}"
    try:
        sh("ip", "netns", "add", ns)
        for a, b in PAIRS:
            sh("ip", "-n", ns, "link", "add", a, "type", "veth", "peer", "name", b)
        yield ns
    finally:
        sh("ip", "netns", "del", ns, check=False)


def kernel_verdicts(ns: str, artifact: Path, jobs: list[tuple[str, str]]) -> list[int]:
    done = subprocess.run(
        ["nsenter", f"--net=/run/netns/{ns}", sys.executable, "-c", RUNNER, str(artifact)],
        input=json.dumps(jobs),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    verdicts: list[int] = json.loads(done.stdout)
    return verdicts


@st.composite
def interface_policies(draw: st.DrawFn) -> Policy:
    """Random policies whose rules often name interfaces, negated or not."""
    doc: dict[str, Any] = draw(policy_documents(max_rules=8))
    for rule in doc["rules"]:
        if draw(st.integers(0, 3)):
            # fewer address constraints: more frames reach the interface test
            rule.pop(draw(st.sampled_from(["source_cidrs", "destination_cidrs"])), None)
        if draw(st.integers(0, 3)):
            picked = draw(st.lists(st.sampled_from(PATTERNS), min_size=1, max_size=3, unique=True))
            rule["interfaces"] = [("!" if draw(st.booleans()) else "") + p for p in picked]
    doc["interfaces"] = {"include": ["*", "lo"]}
    return policy_from_document(doc)


@pytest.mark.parametrize("strategy", ["constants", "tables"])
@settings(
    max_examples=12,
    deadline=None,
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.function_scoped_fixture,
    ],
)
@given(policy=interface_policies(), data=st.data())
def test_program_equals_evaluator_on_every_interface(
    namespace: str,
    strategy: str,
    policy: Policy,
    data: st.DataObject,
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    near = st.one_of(
        valid_frames(policy), valid_frames(policy), valid_frames(policy), frames(policy)
    )
    drawn = data.draw(st.lists(near, min_size=FRAMES_PER_POLICY, max_size=FRAMES_PER_POLICY))
    batch = [f for f in drawn if len(f) >= 14]
    out = tmp_path_factory.mktemp("ifdiff") / "fw.o"
    result = compile_policy(policy, output=out, strategy=strategy)
    jobs = [(frame.hex(), name) for frame in batch for name in NAMES]
    got = kernel_verdicts(namespace, result.path, jobs)
    for (frame, name), verdict in zip(jobs, got, strict=True):
        want = evaluate(policy, bytes.fromhex(frame), interface=name)
        assert verdict == want.xdp_action, (
            f"frame {frame} on {name}: kernel {verdict}, evaluator {want.xdp_action} "
            f"({want.decided_by})"
        )
