"""Read and validate an fwc artifact without the kernel: the ELF (pyelftools) and its manifest.

`read_artifact(path)` returns an `ArtifactSpec` or raises `ArtifactError` with one clear line.
"""

from __future__ import annotations

import faulthandler
import json
import os
import signal
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from io import BytesIO
from pathlib import Path
from typing import Any

import jsonschema
from elftools.common.exceptions import ELFError
from elftools.elf.elffile import ELFFile
from elftools.elf.sections import SymbolTableSection

from fwc.loader import libbpf
from fwc.loader.cli import LoaderError

FORMAT = 1
MANIFEST_SECTION = ".fwc.manifest"
EM_BPF = "EM_BPF"
SHF_ALLOC = 0x2
INSN_SIZE = 8

_NAME = {"type": "string", "minLength": 1}
_COUNT = {"type": "integer", "minimum": 0}
_MANIFEST_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": [
        "format",
        "policy",
        "compiler",
        "strategy",
        "dry_run",
        "log_rate",
        "program",
        "rules",
        "counters",
        "maps",
        "seeds",
    ],
    "properties": {
        "policy": {
            "type": "object",
            "required": ["name", "sha256"],
            "properties": {
                "name": _NAME,
                "sha256": {"type": "string", "pattern": "^[0-9a-f]{64}$"},
            },
        },
        "compiler": {"type": "object", "required": ["version"]},
        "strategy": _NAME,
        "dry_run": {"type": "boolean"},
        "log_rate": _COUNT,
        "program": {
            "type": "object",
            "required": ["name", "section", "insn_count"],
            "properties": {"name": _NAME, "section": _NAME, "insn_count": _COUNT},
        },
        "rules": {"type": "array"},  # items checked by _check_long_lists
        "counters": {
            "type": "object",
            "required": ["map", "slots"],
            "properties": {
                "map": _NAME,
                "slots": {"type": "array"},  # items checked by _check_long_lists
            },
        },
        "maps": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["name", "type", "key_size", "value_size", "max_entries"],
                "properties": {
                    "name": {"type": "string", "minLength": 1, "maxLength": 15},
                    "type": _NAME,
                    "key_size": _COUNT,
                    "value_size": _COUNT,
                    "max_entries": _COUNT,
                },
            },
        },
        "seeds": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["map", "section", "key_size", "value_size", "count"],
                "properties": {
                    "map": _NAME,
                    "section": _NAME,
                    "key_size": {"type": "integer", "minimum": 1},
                    "value_size": {"type": "integer", "minimum": 1},
                    "count": _COUNT,
                },
            },
        },
    },
}


_VALIDATOR = jsonschema.Draft202012Validator(_MANIFEST_SCHEMA)


class ArtifactError(LoaderError):
    """The artifact is missing, malformed, of another format, or disagrees with itself."""


@dataclass(frozen=True)
class MapSpec:
    name: str
    type: str  # libbpf's name: "percpu_array", "lpm_trie", ...
    key_size: int
    value_size: int
    max_entries: int


@dataclass(frozen=True)
class SeedSpec:
    """Records (key bytes then value bytes) fw-load writes into `map` before attaching."""

    map: str
    section: str
    key_size: int
    value_size: int
    records: bytes

    @property
    def count(self) -> int:
        return len(self.records) // (self.key_size + self.value_size)

    def items(self) -> list[tuple[bytes, bytes]]:
        step = self.key_size + self.value_size
        return [
            (self.records[i : i + self.key_size], self.records[i + self.key_size : i + step])
            for i in range(0, len(self.records), step)
        ]


@dataclass(frozen=True)
class ArtifactSpec:
    """Everything fw-load knows about an artifact before touching the kernel."""

    path: str
    data: bytes  # the validated ELF bytes: the kernel layer loads exactly these
    manifest: Mapping[str, Any]
    manifest_bytes: bytes
    program: str
    section: str
    insn_count: int
    license: str
    maps: tuple[MapSpec, ...]
    seeds: tuple[SeedSpec, ...]
    counters_map: str
    counter_slots: tuple[tuple[int, str], ...]  # (index, name), in index order

    @property
    def policy_name(self) -> str:
        return str(self.manifest["policy"]["name"])

    @property
    def policy_sha256(self) -> str:
        return str(self.manifest["policy"]["sha256"])

    def map(self, name: str) -> MapSpec:
        for spec in self.maps:
            if spec.name == name:
                return spec
        raise KeyError(name)


def read_artifact(path: str | os.PathLike[str]) -> ArtifactSpec:
    """Read, parse and cross-check an artifact; raise ArtifactError on the first problem."""
    where = os.fspath(path)
    try:
        data = Path(where).read_bytes()
    except OSError as exc:
        raise ArtifactError(f"{where}: cannot read: {exc.strerror or exc}") from exc
    try:
        return _parse(where, data)
    except ArtifactError as exc:
        raise ArtifactError(f"{where}: {exc}") from exc


def _parse(where: str, data: bytes) -> ArtifactSpec:
    try:
        elf = ELFFile(BytesIO(data))
        sections = {s.name: s for s in elf.iter_sections()}
        section_data = {
            name: s.data() for name, s in sections.items() if s["sh_type"] != "SHT_NOBITS"
        }
        symbols = _symbols(elf)
    except ELFError as exc:
        raise ArtifactError(f"not a readable ELF object ({exc})") from exc
    except ArtifactError:
        raise
    except Exception as exc:  # pyelftools reports truncation as assorted stream/construct errors
        raise ArtifactError(f"not a readable ELF object ({type(exc).__name__})") from exc
    if elf["e_machine"] != EM_BPF:
        raise ArtifactError(f"not a BPF object (machine {elf['e_machine']})")

    manifest_bytes, manifest = _manifest(sections, section_data)
    program = manifest["program"]
    section = program["section"]
    if section not in sections:
        raise ArtifactError(f"program section {section!r} is missing")
    insns = len(section_data[section]) // INSN_SIZE
    if insns != program["insn_count"]:
        raise ArtifactError(
            f"program section {section!r} has {insns} instructions, "
            f"the manifest says {program['insn_count']}"
        )
    shndx = {name: i for i, name in enumerate(sections)}
    if (program["name"], shndx[section]) not in symbols:
        raise ArtifactError(f"program {program['name']!r} is not defined in section {section!r}")
    for required in ("license", ".maps", ".BTF"):
        if required not in sections:
            raise ArtifactError(f"section {required!r} is missing")
    license_text = section_data["license"].split(b"\0", 1)[0].decode(errors="replace")
    if not license_text:
        raise ArtifactError("the license section is empty")

    maps = tuple(
        MapSpec(**{k: m[k] for k in MapSpec.__dataclass_fields__}) for m in manifest["maps"]
    )
    _check_maps(maps, {name for name, idx in symbols if idx == shndx[".maps"]}, data)
    by_name = {m.name: m for m in maps}
    seeds = tuple(_seed(seed, by_name, section_data) for seed in manifest["seeds"])
    counters_map, slots = _counters(manifest["counters"], by_name)
    return ArtifactSpec(
        path=where,
        data=data,
        manifest=manifest,
        manifest_bytes=manifest_bytes,
        program=program["name"],
        section=section,
        insn_count=insns,
        license=license_text,
        maps=maps,
        seeds=seeds,
        counters_map=counters_map,
        counter_slots=slots,
    )


def _symbols(elf: ELFFile) -> set[tuple[str, int]]:
    """(name, section index) of every symbol defined in a section."""
    table = elf.get_section_by_name(".symtab")
    if not isinstance(table, SymbolTableSection):
        raise ArtifactError("the symbol table is missing")
    return {
        (sym.name, sym["st_shndx"])
        for sym in table.iter_symbols()
        if sym.name and isinstance(sym["st_shndx"], int)
    }


def _manifest(sections: dict[str, Any], section_data: dict[str, bytes]) -> tuple[bytes, Any]:
    section = sections.get(MANIFEST_SECTION)
    if section is None:
        raise ArtifactError(f"no manifest: section {MANIFEST_SECTION!r} is missing")
    if section["sh_type"] != "SHT_PROGBITS" or section["sh_flags"] & SHF_ALLOC:
        raise ArtifactError(f"section {MANIFEST_SECTION!r} must be non-allocated PROGBITS")
    raw = section_data[MANIFEST_SECTION].rstrip(b"\0")
    try:
        manifest = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ArtifactError(f"manifest is not valid UTF-8 JSON ({exc})") from exc
    if not isinstance(manifest, dict):
        raise ArtifactError("manifest is not a JSON object")
    version = manifest.get("format")
    if version != FORMAT:
        raise ArtifactError(
            f"manifest format {version!r} is not supported (this fw-load reads format {FORMAT})"
        )
    error = jsonschema.exceptions.best_match(_VALIDATOR.iter_errors(manifest))
    if error is not None:
        raise ArtifactError(f"manifest {error.json_path}: {error.message}")
    _check_long_lists(manifest)
    return raw, manifest


def _check_long_lists(manifest: dict[str, Any]) -> None:
    """The per-rule lists, checked by hand: they grow with the policy, and jsonschema
    spends about half a second on them at 10,000 rules, which an apply should not."""
    lists = (
        ("$.rules", manifest["rules"], ("id", "name", "priority", "action")),
        ("$.counters.slots", manifest["counters"]["slots"], ("index", "name")),
    )
    for where, items, required in lists:
        for i, item in enumerate(items):
            if not isinstance(item, dict):
                raise ArtifactError(f"manifest {where}[{i}]: {item!r} is not of type 'object'")
            for key in required:
                if key not in item:
                    raise ArtifactError(f"manifest {where}[{i}]: {key!r} is a required property")
            for key in ("id", "index"):
                value = item.get(key, 0)
                if type(value) is not int or value < 0:
                    raise ArtifactError(f"manifest {where}[{i}].{key}: must be an integer >= 0")
            for key in ("name", "action"):
                value = item.get(key, "-")
                if not isinstance(value, str) or not value:
                    raise ArtifactError(f"manifest {where}[{i}].{key}: must be a non-empty string")


def _check_maps(maps: tuple[MapSpec, ...], in_elf: set[str], data: bytes) -> None:
    names = [m.name for m in maps]
    if len(set(names)) != len(names):
        raise ArtifactError("the manifest lists a map twice")
    for name in names:
        if name not in in_elf:
            raise ArtifactError(f"map {name!r} is in the manifest but not in section '.maps'")
    for name in sorted(in_elf - set(names)):
        raise ArtifactError(f"map {name!r} is in section '.maps' but not in the manifest")
    actual = {m.name: m for m in _libbpf_maps(data)}
    for spec in maps:
        got = actual.get(spec.name)
        if got is None:
            raise ArtifactError(f"map {spec.name!r}: libbpf finds no such map definition")
        for field in ("type", "key_size", "value_size", "max_entries"):
            want, have = getattr(spec, field), getattr(got, field)
            if want != have:
                raise ArtifactError(
                    f"map {spec.name!r}: the manifest says {field} {want}, the ELF has {have}"
                )


def _libbpf_maps(data: bytes) -> list[libbpf.MapDef]:
    """libbpf's reading of the BTF map definitions (opening needs no privileges).

    It runs in a forked child: libbpf 1.1 can crash on a damaged ELF, and a crash there must
    become an ArtifactError, not take fw-load down.
    """
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(read_end)
        # A crash here is expected and reported by the parent; no traceback dump from
        # the child (pytest and python -X faulthandler turn it on).
        faulthandler.disable()
        os._exit(_libbpf_maps_child(data, write_end))
    os.close(write_end)
    with os.fdopen(read_end, "rb") as pipe:
        payload = pipe.read()
    _, status = os.waitpid(pid, 0)
    if os.WIFSIGNALED(status):
        name = signal.Signals(os.WTERMSIG(status)).name
        raise ArtifactError(f"the ELF is damaged: libbpf crashed reading it ({name})")
    try:
        result = json.loads(payload)
    except json.JSONDecodeError:
        result = {"error": "no answer from the libbpf reader"}
    if "error" in result:
        raise ArtifactError(f"libbpf cannot open the object: {result['error']}")
    return [libbpf.MapDef(**m) for m in result["maps"]]


def _libbpf_maps_child(data: bytes, out: int) -> int:
    """In the forked child: open the object, write {"maps": [...]} or {"error": ...} to `out`."""
    try:
        with libbpf.capture_messages() as messages:
            try:
                obj = libbpf.Object(data)
            except libbpf.KernelError as exc:
                detail = "".join(messages).strip().splitlines()
                result: dict[str, Any] = {"error": detail[-1] if detail else str(exc)}
            else:
                result = {"maps": [asdict(m) for m in obj.maps()]}
                obj.close()
        with os.fdopen(out, "wb") as pipe:
            pipe.write(json.dumps(result).encode())
    except BaseException:
        return 1
    return 0


def _seed(seed: Mapping[str, Any], maps: dict[str, MapSpec], data: dict[str, bytes]) -> SeedSpec:
    name, section = seed["map"], seed["section"]
    target = maps.get(name)
    if target is None:
        raise ArtifactError(f"seed for map {name!r}: no such map in the manifest")
    if (seed["key_size"], seed["value_size"]) != (target.key_size, target.value_size):
        raise ArtifactError(f"seed for map {name!r}: key/value sizes differ from the map's")
    records = data.get(section)
    if records is None:
        raise ArtifactError(f"seed for map {name!r}: section {section!r} is missing")
    want = seed["count"] * (seed["key_size"] + seed["value_size"])
    if len(records) != want:
        raise ArtifactError(
            f"seed section {section!r} has {len(records)} bytes, expected {want} "
            f"({seed['count']} records)"
        )
    return SeedSpec(name, section, seed["key_size"], seed["value_size"], records)


def _counters(
    counters: Mapping[str, Any], maps: dict[str, MapSpec]
) -> tuple[str, tuple[tuple[int, str], ...]]:
    name = counters["map"]
    target = maps.get(name)
    if target is None:
        raise ArtifactError(f"counters map {name!r} is not in the manifest's maps")
    if (target.type, target.key_size, target.value_size) != ("percpu_array", 4, 16):
        raise ArtifactError(
            f"counters map {name!r} must be a percpu_array with 4-byte keys and 16-byte values"
        )
    slots = sorted((s["index"], s["name"]) for s in counters["slots"])
    indexes = [index for index, _ in slots]
    if len(set(indexes)) != len(indexes) or any(i >= target.max_entries for i in indexes):
        raise ArtifactError(f"counter slots must be distinct indexes below {target.max_entries}")
    return name, tuple(slots)
