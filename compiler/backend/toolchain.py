"""Finds the C toolchain: the newest clang-N and llvm-objcopy-N on PATH, or $FWC_CLANG."""

from __future__ import annotations

import os
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

from fwc.compiler.errors import ToolError

_VERSIONED = re.compile(r"(clang|llvm-objcopy)-(\d+)")
_VERSION = re.compile(r"clang version (\d+(?:\.\d+)*)")


class ToolchainError(ToolError):
    """clang or llvm-objcopy is missing or unusable."""


@dataclass(frozen=True)
class Toolchain:
    clang: Path
    objcopy: Path
    clang_version: str  # "22.1.8"


def find_toolchain() -> Toolchain:
    """The toolchain to build with; $FWC_CLANG (a path or a name on PATH) overrides clang."""
    override = os.environ.get("FWC_CLANG")
    if override:
        clang = _resolve(override)
        if clang is None:
            raise ToolchainError(f"clang not found: FWC_CLANG={override} is not an executable")
    else:
        clang = _newest("clang")
        if clang is None:
            raise ToolchainError(
                "clang not found on PATH (install clang, e.g. `apt install clang`, "
                "or set FWC_CLANG)"
            )
    version = _clang_version(clang)
    objcopy = _objcopy_for(clang)
    if objcopy is None:
        raise ToolchainError(
            "llvm-objcopy not found on PATH (install llvm, e.g. `apt install llvm`)"
        )
    return Toolchain(clang=clang, objcopy=objcopy, clang_version=version)


# The libbpf headers the programs include (templates/bpf/fwc_bpf.h), from libbpf-dev.
LIBBPF_HEADERS = ("bpf/bpf_helpers.h", "bpf/bpf_helper_defs.h")
INCLUDE_DIRS = (Path("/usr/local/include"), Path("/usr/include"))


def libbpf_headers() -> dict[str, bytes]:
    """The libbpf headers clang will include, by name: part of the build cache's key."""
    found: dict[str, bytes] = {}
    for name in LIBBPF_HEADERS:
        path = next((d / name for d in INCLUDE_DIRS if (d / name).is_file()), None)
        if path is None:
            raise ToolchainError(
                f"{name} not found in /usr/include (install libbpf's headers, "
                "e.g. `apt install libbpf-dev`)"
            )
        found[name] = path.read_bytes()
    return found


def _resolve(name: str) -> Path | None:
    path = Path(name)
    if "/" not in name:
        for directory in _path_dirs():
            if _executable(directory / name):
                return directory / name
        return None
    return path if _executable(path) else None


def _executable(path: Path) -> bool:
    return path.is_file() and os.access(path, os.X_OK)


def _path_dirs() -> list[Path]:
    return [Path(d) for d in os.environ.get("PATH", "").split(os.pathsep) if d]


def _newest(tool: str) -> Path | None:
    """`tool-N` with the largest N on PATH, else plain `tool`."""
    best: tuple[int, Path] | None = None
    for directory in _path_dirs():
        try:
            entries = sorted(directory.iterdir())
        except OSError:
            continue
        for entry in entries:
            m = _VERSIONED.fullmatch(entry.name)
            if m and m.group(1) == tool and _executable(entry):
                number = int(m.group(2))
                if best is None or number > best[0]:
                    best = (number, entry)
    return best[1] if best else _resolve(tool)


def _objcopy_for(clang: Path) -> Path | None:
    """The llvm-objcopy of clang's own release when there is one, else the newest."""
    m = _VERSIONED.fullmatch(clang.name)
    if m:
        same = _resolve(f"llvm-objcopy-{m.group(2)}") or _resolve(
            str(clang.parent / f"llvm-objcopy-{m.group(2)}")
        )
        if same is not None:
            return same
    sibling = clang.resolve().parent / "llvm-objcopy"
    if _executable(sibling):
        return sibling
    return _newest("llvm-objcopy")


def _clang_version(clang: Path) -> str:
    try:
        out = subprocess.run(
            [str(clang), "--version"], capture_output=True, text=True, timeout=30, check=False
        )
    except OSError as exc:
        raise ToolchainError(f"cannot run {clang}: {exc.strerror}") from exc
    m = _VERSION.search(out.stdout)
    if out.returncode != 0 or m is None:
        raise ToolchainError(f"{clang} does not look like clang (`--version` failed)")
    return m.group(1)
