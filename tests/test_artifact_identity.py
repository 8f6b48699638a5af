"""One artifact identity (issue 11 item 6): the whole file's sha256 is what --expect-hash
approves, and the program carries the digest of what its manifest may claim."""

from __future__ import annotations

import functools
import hashlib
import json
import random
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fwc.artifact import claims, codec
from fwc.artifact.layout import MANIFEST_SECTION
from fwc.compiler.backend.build import compile_policy
from fwc.compiler.backend.render import template_dir
from fwc.loader.apply.transaction import ApplyOptions, prepare
from fwc.loader.errors import LoaderError
from fwc.loader.live.digest import program_sha256
from fwc.loader.reader.artifact import ArtifactError, read_artifact
from tests.compile_helpers import policy_of

ROOT = Path(__file__).resolve().parent.parent
EDGE_TEXT = (ROOT / "policies" / "edge-web.yaml").read_text()
# edge-web's shape with every rule and the default allowing: everything passes
ALLOW_ALL_TEXT = EDGE_TEXT.replace("action: deny", "action: allow").replace(
    "default_action: deny", "default_action: allow"
)
OBJCOPY = "/usr/bin/llvm-objcopy-22"


@functools.cache
def _built(text: str, strategy: str, dry_run: bool = False) -> bytes:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "fw.o"
        policy = policy_of(text, "edge-web.yaml")
        compile_policy(policy, output=out, strategy=strategy, dry_run=dry_run)
        return out.read_bytes()


def _artifact(tmp: Path, text: str, strategy: str = "constants", dry_run: bool = False) -> Path:
    path = tmp / f"{strategy}-{abs(hash((text, dry_run)))}.o"
    path.write_bytes(_built(text, strategy, dry_run))
    return path


def _manifest(path: Path) -> dict[str, Any]:
    return codec.to_json(read_artifact(path).manifest)


def _with_manifest(path: Path, manifest: dict[str, Any], out: Path) -> Path:
    """`path` with its manifest section replaced by `manifest` (what an attacker edits)."""
    blob = out.with_suffix(".json")
    blob.write_bytes(json.dumps(manifest, sort_keys=True, separators=(",", ":")).encode())
    subprocess.run(
        [OBJCOPY, f"--update-section={MANIFEST_SECTION}={blob}", str(path), str(out)], check=True
    )
    return out


def test_template_marker_is_the_contract() -> None:
    assert f"{claims.MAGIC:#x}" in (template_dir() / "fwc_bpf.h").read_text()


@pytest.mark.parametrize("strategy", ["constants", "tables"])
def test_compiled_artifacts_carry_their_claims(tmp_path: Path, strategy: str) -> None:
    spec = read_artifact(_artifact(tmp_path, EDGE_TEXT, strategy))
    program = spec.obj.sections[spec.section].data
    seeds = {seed.section: seed.raw for seed in spec.seeds}
    assert claims.read(program) == claims.digest(spec.manifest, seeds)


@pytest.mark.parametrize("strategy", ["constants", "tables"])
def test_allow_all_program_with_edge_webs_manifest(tmp_path: Path, strategy: str) -> None:
    """The forgery of the issue: an allow-all program under edge-web's manifest. Its ELF facts
    (program entry, maps, seeds) are made to match, so only the claims can tell."""
    edge = _artifact(tmp_path, EDGE_TEXT, strategy)
    allow_all = _artifact(tmp_path, ALLOW_ALL_TEXT, strategy)
    verbatim = _with_manifest(allow_all, _manifest(edge), tmp_path / "verbatim.o")
    with pytest.raises(ArtifactError):
        read_artifact(verbatim)
    forged_doc = _manifest(edge)
    honest = _manifest(allow_all)
    for key in ("program", "maps", "seeds"):
        forged_doc[key] = honest[key]
    forged = _with_manifest(allow_all, forged_doc, tmp_path / "forged.o")
    with pytest.raises(ArtifactError, match="the manifest does not describe this program"):
        read_artifact(forged)


def _edit(path: str, value: Any) -> Any:
    def edit(doc: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        node = doc
        for key in parents:
            node = node[key]
        node[last] = value

    return edit


# each a lie the loader used to believe: the report, status and stats read these fields
LIES = [
    ("dry_run", _edit("dry_run", True)),
    ("default action", _edit("policy.default_action", "allow")),
    ("source hash", _edit("policy.sha256", "cd" * 32)),
    ("policy name", _edit("policy.name", "other")),
    ("strategy", _edit("strategy", "tables")),
    ("rule action", lambda d: d["rules"]["action"].__setitem__(0, "allow")),
    ("rule name", lambda d: d["rules"]["name"].__setitem__(0, "harmless")),
    ("counter slot name", lambda d: d["counters"]["slots"]["name"].__setitem__(0, "x")),
    ("interfaces", _edit("policy.interfaces", {"include": ["lo"], "exclude": []})),
    ("log rate", _edit("log_rate", 1)),
]


@pytest.mark.parametrize("lie", [edit for _, edit in LIES], ids=[name for name, _ in LIES])
def test_a_manifest_that_lies_is_refused(tmp_path: Path, lie: Any) -> None:
    edge = _artifact(tmp_path, EDGE_TEXT)
    doc = _manifest(edge)
    lie(doc)
    forged = _with_manifest(edge, doc, tmp_path / "forged.o")
    with pytest.raises(ArtifactError, match="the manifest does not describe this program"):
        read_artifact(forged)


def test_dry_run_manifest_on_an_enforcing_program(tmp_path: Path) -> None:
    enforcing = _artifact(tmp_path, EDGE_TEXT)
    dry = _artifact(tmp_path, EDGE_TEXT, dry_run=True)
    doc = _manifest(dry)
    doc["program"] = _manifest(enforcing)["program"]
    forged = _with_manifest(enforcing, doc, tmp_path / "forged.o")
    with pytest.raises(ArtifactError, match="does not describe this program"):
        read_artifact(forged)


def test_expect_hash_is_the_whole_file(tmp_path: Path) -> None:
    edge = _artifact(tmp_path, EDGE_TEXT)
    spec = read_artifact(edge)
    assert spec.sha256 == hashlib.sha256(edge.read_bytes()).hexdigest()
    options = ApplyOptions(artifact=edge, root=tmp_path, expect_hash=spec.sha256.upper())
    assert prepare(options).sha256 == spec.sha256
    # the policy source's hash is no artifact identity
    with pytest.raises(LoaderError, match="is not the expected"):
        prepare(ApplyOptions(artifact=edge, root=tmp_path, expect_hash=spec.source_sha256))


def test_live_update_compares_code_not_claims(tmp_path: Path) -> None:
    """Two rule sets of the tables strategy: same code, different claims."""
    one = read_artifact(_artifact(tmp_path, EDGE_TEXT, "tables"))
    other_text = EDGE_TEXT.replace("priority: 50", "priority: 52")
    other = read_artifact(_artifact(tmp_path, other_text, "tables"))
    assert program_sha256(one.obj, one.section) == program_sha256(other.obj, other.section)
    assert claims.read(one.obj.sections["xdp"].data) != claims.read(other.obj.sections["xdp"].data)


@settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(st.data())
def test_bit_flips_never_pass_as_the_original(tmp_path: Path, data: st.DataObject) -> None:
    """A flipped bit anywhere is never accepted under the original identity, and never a
    traceback: one LoaderError line or, at most, an artifact of another identity."""
    strategy = data.draw(st.sampled_from(["constants", "tables"]))
    original = _built(EDGE_TEXT, strategy)
    digest = read_artifact(_artifact(tmp_path, EDGE_TEXT, strategy)).sha256
    flipped = bytearray(original)
    rng = random.Random(data.draw(st.integers(0, 2**32)))
    for _ in range(data.draw(st.integers(1, 3))):
        at = rng.randrange(len(flipped))
        flipped[at] ^= 1 << rng.randrange(8)
    path = tmp_path / "flipped.o"
    path.write_bytes(bytes(flipped))
    try:
        prepare(ApplyOptions(artifact=path, root=tmp_path, expect_hash=digest))
    except LoaderError as exc:
        assert "\n" not in str(exc)
    else:
        pytest.fail("a flipped artifact was accepted under the original digest")
