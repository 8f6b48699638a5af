"""Builds the artifact: plan, render, clang (with a content-addressed cache), embed the manifest."""

from __future__ import annotations

import hashlib
import os
import shutil
import stat
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fwc.artifact.codec import encode, to_json
from fwc.artifact.layout import MANIFEST_SECTION
from fwc.artifact.manifest import Manifest
from fwc.compiler.backend.manifest import build_manifest, insn_count
from fwc.compiler.backend.options import DEFAULT_OPTIONS, CompileOptions
from fwc.compiler.backend.plan import Plan, make_plan
from fwc.compiler.backend.render import Rendered, headers, render_mapped
from fwc.compiler.backend.toolchain import Toolchain, find_toolchain, libbpf_headers
from fwc.compiler.errors import ToolError
from fwc.compiler.policy.ir import Policy
from fwc.files import kind_of

SOURCE_NAME = "fwc_xdp.c"
OBJECT_NAME = "fwc_xdp.o"
# -g gives the BTF the kernel needs (and the source lines --verify maps back to rules).
CLANG_FLAGS = ("-O2", "-g", "-target", "bpf", "-Wall", "-Wno-unused-function")
CLANG_TIMEOUT_S = 900


class BuildError(ToolError):
    """clang or llvm-objcopy failed; `log` holds the tool's full output."""

    def __init__(self, message: str, log: str = "") -> None:
        super().__init__(message)
        self.log = log


@dataclass(frozen=True)
class BuildResult:
    path: Path
    manifest: dict[str, Any]  # as encoded (fwc.artifact.codec.to_json)
    rendered: Rendered  # the C source and its source map
    plan: Plan
    cached: bool  # the object came from the build cache

    @property
    def c_source(self) -> str:
        return self.rendered.source


def default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "fwc"


def compile_policy(
    policy: Policy,
    *,
    output: Path,
    strategy: str = "auto",
    dry_run: bool = False,
    cache_dir: Path | None = None,
    options: CompileOptions = DEFAULT_OPTIONS,
) -> BuildResult:
    """Builds `policy` into the artifact at `output`; `cache_dir` None disables the cache.

    Raises PlanError when the strategy refuses the policy, BuildError when the tools fail.
    """
    return build_plan(make_plan(policy, strategy, dry_run, options), output, cache_dir)


def build_plan(
    plan: Plan, output: Path, cache_dir: Path | None = None, rendered: Rendered | None = None
) -> BuildResult:
    """Builds the artifact of an already made plan (and its rendering, when the caller has
    it); raises BuildError when the tools fail."""
    rendered = rendered or render_mapped(plan)
    toolchain = find_toolchain()
    obj, cached = _object(rendered.source, toolchain, cache_dir)
    manifest = build_manifest(plan, toolchain.clang_version, insn_count(obj))
    _embed(toolchain, obj, plan, manifest, Path(output))
    return BuildResult(Path(output), to_json(manifest), rendered, plan, cached)


def cache_key(source: str, toolchain: Toolchain) -> str:
    digest = hashlib.sha256()
    for part in (source.encode(), toolchain.clang_version.encode(), " ".join(CLANG_FLAGS).encode()):
        digest.update(len(part).to_bytes(8, "big") + part)
    for name, text in (*headers().items(), *libbpf_headers().items()):
        digest.update(name.encode() + b"\0" + text)
    return digest.hexdigest()


def _object(source: str, toolchain: Toolchain, cache_dir: Path | None) -> tuple[bytes, bool]:
    """The clang output for `source`, from the cache when it holds it."""
    cached = cache_dir / f"{cache_key(source, toolchain)}.o" if cache_dir else None
    if cached is not None and cached.is_file():
        return cached.read_bytes(), True
    obj = _clang(source, toolchain)
    if cached is not None:
        _store(cached, obj)
    return obj, False


def _clang(source: str, toolchain: Toolchain) -> bytes:
    with tempfile.TemporaryDirectory(prefix="fwc-build-") as tmp:
        work = Path(tmp)
        (work / SOURCE_NAME).write_text(source)
        for name, text in headers().items():
            (work / name).write_bytes(text)
        # Paths are relative and the temp dir is mapped to ".", so nothing in the
        # object depends on where the build ran.
        command = [
            str(toolchain.clang),
            *CLANG_FLAGS,
            f"-fdebug-prefix-map={work}=.",
            f"-ffile-prefix-map={work}=.",
            "-c",
            SOURCE_NAME,
            "-o",
            OBJECT_NAME,
        ]
        _run(command, work, "clang failed to build the generated program")
        try:
            return (work / OBJECT_NAME).read_bytes()
        except OSError as exc:
            raise BuildError(f"{toolchain.clang} wrote no object file: {exc.strerror}") from exc


def _embed(toolchain: Toolchain, obj: bytes, plan: Plan, manifest: Manifest, output: Path) -> None:
    with tempfile.TemporaryDirectory(prefix="fwc-embed-") as tmp:
        work = Path(tmp)
        (work / "in.o").write_bytes(obj)
        (work / "manifest.json").write_bytes(encode(manifest))
        command = [
            str(toolchain.objcopy),
            "--strip-debug",
            f"--add-section={MANIFEST_SECTION}=manifest.json",
        ]
        for seed in plan.seeds:
            name = f"seed-{seed.map}.bin"
            (work / name).write_bytes(seed.data)
            command.append(f"--add-section={seed.section}={name}")
        command += ["in.o", "out.o"]
        _run(command, work, "llvm-objcopy failed to embed the manifest")
        try:
            output.parent.mkdir(parents=True, exist_ok=True)
            _store(output, work / "out.o")
        except OSError as exc:
            raise BuildError(f"cannot write {output}: {exc.strerror}") from exc


def _run(command: list[str], cwd: Path, what: str) -> None:
    try:
        done = subprocess.run(
            command, cwd=cwd, capture_output=True, text=True, timeout=CLANG_TIMEOUT_S, check=False
        )
    except OSError as exc:
        raise BuildError(f"{what}: cannot run {command[0]}: {exc.strerror}") from exc
    except subprocess.TimeoutExpired as exc:
        raise BuildError(f"{what}: {command[0]} timed out after {CLANG_TIMEOUT_S} s") from exc
    if done.returncode != 0:
        log = done.stderr + done.stdout
        if "out of insn range" in log:
            raise BuildError(
                f"{what}: the program is too large for BPF jumps; use --strategy tables", log
            )
        first = next((line for line in log.splitlines() if "error" in line), "")
        first = first or (log.strip().splitlines() or ["no output"])[0]
        raise BuildError(f"{what}: {first.strip()}", log)


def check_output(path: Path) -> None:
    """Raise BuildError unless `path` is a new name or a regular file: a rename over a device,
    a FIFO, a directory or a symlink would destroy it (`-o /dev/null` as root)."""
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return
    except OSError as exc:
        raise BuildError(f"cannot write {path}: {exc.strerror}") from exc
    if not stat.S_ISREG(mode):
        kind = "a symlink" if stat.S_ISLNK(mode) else kind_of(mode)
        raise BuildError(f"{path} is {kind}, not a regular file; refusing to replace it")


def _store(path: Path, data: bytes | Path) -> None:
    """Writes `data` (or copies the file it names) atomically, so a reader never sees half an
    object: a temp file in the same directory (created exclusively), renamed only onto a
    regular file or a new name."""
    path.parent.mkdir(parents=True, exist_ok=True)
    check_output(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            if isinstance(data, Path):
                with data.open("rb") as source:
                    shutil.copyfileobj(source, f)
            else:
                f.write(data)
        os.chmod(tmp, 0o644)
        check_output(path)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
