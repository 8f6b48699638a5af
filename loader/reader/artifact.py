"""Read and validate an fwc artifact without the kernel: the ELF (pyelftools) and its manifest.

`read_artifact(path)` returns an `ArtifactSpec` or raises `ArtifactError` with one clear line.
"""

from __future__ import annotations

import faulthandler
import functools
import json
import os
import re
import signal
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from operator import itemgetter
from pathlib import Path
from typing import Any

from fwc.artifact import columns as manifest_tables
from fwc.loader.errors import LoaderError
from fwc.loader.kernel import libbpf
from fwc.loader.reader import elf

FORMAT = 2
# a seed section holds (key, value) records, or for an array with keys 0 .. count-1 its image
IMAGE = "image"
LAYOUTS = ("records", IMAGE)
MANIFEST_SECTION = ".fwc.manifest"
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
        "rules": {"type": "object"},  # columns checked by manifest_tables.table_error
        "counters": {
            "type": "object",
            "required": ["map", "slots"],
            "properties": {
                "map": _NAME,
                "slots": {"type": "object"},  # columns checked as the rules are
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
                    "layout": {"enum": list(LAYOUTS)},
                },
            },
        },
    },
}


_SHA256 = re.compile("[0-9a-f]{64}")


def image_stride(value_size: int) -> int:
    """Bytes between two elements of an array map: the kernel rounds values up to 8 bytes."""
    return (value_size + 7) // 8 * 8


_iota_cache = bytearray()


def iota(count: int) -> memoryview:
    """Little-endian u32 keys 0 .. count-1 (the keys an image seed implies), built one byte
    lane at a time (C speed, no ints) and kept: callers want prefixes of the longest."""
    global _iota_cache
    if len(_iota_cache) < count * 4:
        out = bytearray(count * 4)
        for lane in range(4):
            unit = 1 << (8 * lane)
            period = b"".join(
                bytes([j]) * min(unit, count) for j in range(min(256, -(-count // unit)))
            )
            out[lane::4] = (period * -(-count // len(period)))[:count]
        _iota_cache = out
    return memoryview(_iota_cache)[: count * 4]


# seed records: a view into the artifact's bytes, or a copy the loader made of them
Buffer = bytes | bytearray | memoryview


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
    """What fw-load writes into `map` before attaching: records (key bytes then value bytes),
    or for an array with keys 0 .. count-1 its image (each value padded to 8 bytes)."""

    map: str
    section: str
    key_size: int
    value_size: int
    raw: memoryview  # the section's bytes: read-only, into the artifact's bytes
    layout: str = "records"  # or "image"

    @property
    def image(self) -> memoryview | None:
        """The array's memory from element 0 on (the mmap layout); None for records."""
        return self.raw if self.layout == IMAGE else None

    @functools.cached_property
    def records(self) -> memoryview:
        """The seed as (key, value) records, whatever its layout."""
        if self.layout != IMAGE:
            return self.raw
        stride, step = image_stride(self.value_size), self.key_size + self.value_size
        out = bytearray(self.count * step)
        keys = iota(self.count)
        for b in range(self.key_size):
            out[b::step] = keys[b :: self.key_size]
        for b in range(self.value_size):
            out[self.key_size + b :: step] = self.raw[b::stride]
        return memoryview(bytes(out))

    @property
    def count(self) -> int:
        if self.layout == IMAGE:
            return len(self.raw) // image_stride(self.value_size)
        return len(self.raw) // (self.key_size + self.value_size)

    def items(self) -> list[tuple[bytes, bytes]]:
        step = self.key_size + self.value_size
        raw = self.records
        return [
            (bytes(raw[i : i + self.key_size]), bytes(raw[i + self.key_size : i + step]))
            for i in range(0, len(raw), step)
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


def read_artifact(path: str | os.PathLike[str], map_definitions: bool = True) -> ArtifactSpec:
    """Read, parse and cross-check an artifact; raise ArtifactError on the first problem.

    `map_definitions=False` leaves out libbpf's reading of the BTF map definitions (a forked
    child, tens of ms): a live update never creates maps from them. Whoever loads the object
    calls `check_map_definitions` first.
    """
    where = os.fspath(path)
    try:
        data = Path(where).read_bytes()
    except OSError as exc:
        raise ArtifactError(f"{where}: cannot read: {exc.strerror or exc}") from exc
    try:
        spec = _parse(where, data)
        if map_definitions:
            _check_map_definitions(spec.maps, data)
    except ArtifactError as exc:
        raise ArtifactError(f"{where}: {exc}") from exc
    return spec


def check_map_definitions(spec: ArtifactSpec) -> None:
    """Raise ArtifactError unless libbpf reads the ELF's maps as the manifest lists them."""
    try:
        _check_map_definitions(spec.maps, spec.data)
    except ArtifactError as exc:
        raise ArtifactError(f"{spec.path}: {exc}") from exc


def _parse(where: str, data: bytes) -> ArtifactSpec:
    try:
        obj = elf.ElfFile(data)
    except elf.ElfError as exc:
        raise ArtifactError(f"not a readable ELF object ({exc})") from exc
    sections = obj.by_name
    section_data = {name: obj.section_data(s) for name, s in sections.items()}
    symbols = _symbols(obj)
    if obj.machine != elf.EM_BPF:
        raise ArtifactError(f"not a BPF object (machine {obj.machine})")

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
    shndx = {name: s.index for name, s in sections.items()}
    if (program["name"], shndx[section]) not in symbols:
        raise ArtifactError(f"program {program['name']!r} is not defined in section {section!r}")
    for required in ("license", ".maps", ".BTF"):
        if required not in sections:
            raise ArtifactError(f"section {required!r} is missing")
    license_text = bytes(section_data["license"]).split(b"\0", 1)[0].decode(errors="replace")
    if not license_text:
        raise ArtifactError("the license section is empty")

    maps = tuple(
        MapSpec(**{k: m[k] for k in MapSpec.__dataclass_fields__}) for m in manifest["maps"]
    )
    _check_maps(maps, {name for name, idx in symbols if idx == shndx[".maps"]})
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


def _symbols(obj: elf.ElfFile) -> set[tuple[str, int]]:
    """(name, section index) of every symbol defined in a section."""
    table = obj.by_name.get(".symtab")
    if table is None or table.type != elf.SHT_SYMTAB:
        raise ArtifactError("the symbol table is missing")
    try:
        return {
            (sym.name, sym.section) for sym in obj.symbols(table) if sym.name and elf.defined(sym)
        }
    except elf.ElfError as exc:
        raise ArtifactError(f"not a readable ELF object ({exc})") from exc


def _manifest(
    sections: dict[str, elf.Section], section_data: dict[str, memoryview]
) -> tuple[bytes, Any]:
    section = sections.get(MANIFEST_SECTION)
    if section is None:
        raise ArtifactError(f"no manifest: section {MANIFEST_SECTION!r} is missing")
    if section.type != elf.SHT_PROGBITS or section.flags & SHF_ALLOC:
        raise ArtifactError(f"section {MANIFEST_SECTION!r} must be non-allocated PROGBITS")
    raw = bytes(section_data[MANIFEST_SECTION]).rstrip(b"\0")
    try:
        manifest = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ArtifactError(f"manifest is not valid UTF-8 JSON ({exc})") from exc
    if not isinstance(manifest, dict):
        raise ArtifactError("manifest is not a JSON object")
    version = manifest.get("format")
    if version != FORMAT:
        raise ArtifactError(
            f"manifest format {version!r} is not supported (this fw-load reads format {FORMAT}):"
            " compile the policy again with the fwc of this release"
        )
    if not _plainly_valid(manifest):
        _schema_errors(manifest)
    _check_tables(manifest)
    return raw, manifest


def _schema_errors(manifest: dict[str, Any]) -> None:
    """Raise the schema's best error; jsonschema is imported only for a suspect manifest."""
    # imported here: its import alone costs more than a whole live update
    import jsonschema

    validator = jsonschema.Draft202012Validator(_MANIFEST_SCHEMA)
    error = jsonschema.exceptions.best_match(validator.iter_errors(manifest))
    if error is not None:
        raise ArtifactError(f"manifest {error.json_path}: {error.message}")


def _name(value: Any, longest: int = 1 << 30) -> bool:
    return isinstance(value, str) and 1 <= len(value) <= longest


def _count(value: Any, least: int = 0) -> bool:
    return type(value) is int and value >= least


def _object(value: Any, *keys: str) -> bool:
    return isinstance(value, dict) and all(key in value for key in keys)


def _plainly_valid(m: dict[str, Any]) -> bool:
    """_MANIFEST_SCHEMA checked by hand, at least as strictly; False sends the manifest to
    jsonschema, which then names the problem (or accepts what this is too strict for)."""
    required = _MANIFEST_SCHEMA["required"]
    if not _object(m, *required):
        return False
    policy, program, counters = m["policy"], m["program"], m["counters"]
    if not (
        _object(policy, "name", "sha256")
        and _name(policy["name"])
        and isinstance(policy["sha256"], str)
        and _SHA256.fullmatch(policy["sha256"])
        and _object(m["compiler"], "version")
        and _name(m["strategy"])
        and isinstance(m["dry_run"], bool)
        and _count(m["log_rate"])
        and _object(program, "name", "section", "insn_count")
        and _name(program["name"])
        and _name(program["section"])
        and _count(program["insn_count"])
        and isinstance(m["rules"], dict)
        and _object(counters, "map", "slots")
        and _name(counters["map"])
        and isinstance(counters["slots"], dict)
        and isinstance(m["maps"], list)
        and isinstance(m["seeds"], list)
    ):
        return False
    for item in m["maps"]:
        fields = ("name", "type", "key_size", "value_size", "max_entries")
        if not (_object(item, *fields) and _name(item["name"], 15) and _name(item["type"])):
            return False
        if not all(_count(item[key]) for key in fields[2:]):
            return False
    for item in m["seeds"]:
        fields = ("map", "section", "key_size", "value_size", "count")
        if not (_object(item, *fields) and _name(item["map"]) and _name(item["section"])):
            return False
        if not (_count(item["key_size"], 1) and _count(item["value_size"], 1)):
            return False
        if not _count(item["count"]) or item.get("layout", "records") not in LAYOUTS:
            return False
    return True


def _check_tables(manifest: dict[str, Any]) -> None:
    """The rule and counter-slot columns: they grow with the policy, and jsonschema would
    spend about half a second on them at 10,000 rules, which an apply should not."""
    tables = (
        ("$.rules", manifest["rules"], manifest_tables.RULE_FIELDS),
        ("$.counters.slots", manifest["counters"]["slots"], manifest_tables.SLOT_FIELDS),
    )
    for where, table, fields in tables:
        error = manifest_tables.table_error(table, fields)
        if error is not None:
            raise ArtifactError(f"manifest {where}{error}")


def _check_maps(maps: tuple[MapSpec, ...], in_elf: set[str]) -> None:
    names = [m.name for m in maps]
    if len(set(names)) != len(names):
        raise ArtifactError("the manifest lists a map twice")
    for name in names:
        if name not in in_elf:
            raise ArtifactError(f"map {name!r} is in the manifest but not in section '.maps'")
    for name in sorted(in_elf - set(names)):
        raise ArtifactError(f"map {name!r} is in section '.maps' but not in the manifest")


def _check_map_definitions(maps: tuple[MapSpec, ...], data: bytes) -> None:
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


def _seed(
    seed: Mapping[str, Any], maps: dict[str, MapSpec], data: dict[str, memoryview]
) -> SeedSpec:
    name, section = seed["map"], seed["section"]
    target = maps.get(name)
    if target is None:
        raise ArtifactError(f"seed for map {name!r}: no such map in the manifest")
    if (seed["key_size"], seed["value_size"]) != (target.key_size, target.value_size):
        raise ArtifactError(f"seed for map {name!r}: key/value sizes differ from the map's")
    raw = data.get(section)
    if raw is None:
        raise ArtifactError(f"seed for map {name!r}: section {section!r} is missing")
    layout = seed.get("layout", "records")
    if layout == IMAGE:
        if target.type != "array" or target.key_size != 4:
            raise ArtifactError(f"seed for map {name!r}: an image seeds only an array map")
        if seed["count"] > target.max_entries:
            raise ArtifactError(
                f"seed for map {name!r}: {seed['count']} elements, the map holds "
                f"{target.max_entries}"
            )
        want = seed["count"] * image_stride(seed["value_size"])
    else:
        want = seed["count"] * (seed["key_size"] + seed["value_size"])
    if len(raw) != want:
        raise ArtifactError(
            f"seed section {section!r} has {len(raw)} bytes, expected {want} "
            f"({seed['count']} {'elements' if layout == IMAGE else 'records'})"
        )
    return SeedSpec(name, section, seed["key_size"], seed["value_size"], raw, layout)


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
    # a C-level zip and a sort of an already sorted list: linear, no Python loop per slot
    slots = sorted(zip(counters["slots"]["index"], counters["slots"]["name"], strict=True))
    indexes = list(map(itemgetter(0), slots))
    if len(set(indexes)) != len(indexes) or (indexes and indexes[-1] >= target.max_entries):
        raise ArtifactError(f"counter slots must be distinct indexes below {target.max_entries}")
    return name, tuple(slots)
