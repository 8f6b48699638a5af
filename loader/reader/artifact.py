"""Read an fwc artifact into an ArtifactSpec without the kernel, cross-checking ELF and manifest.

`read_artifact(path)` returns an `ArtifactSpec` or raises `ArtifactError` with one clear line.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field

from fwc.artifact import claims, codec
from fwc.artifact.layout import (
    COUNTER,
    COUNTER_KEY_SIZE,
    IMAGE,
    IMAGE_KEY_SIZE,
    INSN_SIZE,
    MANIFEST_SECTION,
    image_stride,
)
from fwc.artifact.manifest import Manifest, MapEntry, SeedEntry
from fwc.files import ARTIFACT_LIMIT, FileReadError, read_bounded
from fwc.loader.errors import LoaderError
from fwc.loader.reader.mapdefs import MapDefinitionError, libbpf_maps
from fwc.loader.reader.objfile import ObjectError, ObjectFile, Section, read_object
from fwc.loader.reader.seeds import SeedSpec

SHF_ALLOC = 0x2
# the manifest's entry of a map is what the loader knows of it before the kernel
MapSpec = MapEntry


class ArtifactError(LoaderError):
    """The artifact is missing, malformed, of another format, or disagrees with itself."""


@dataclass(frozen=True)
class ArtifactSpec:
    """Everything fw-load knows about an artifact before touching the kernel."""

    path: str
    data: bytes  # the validated ELF bytes: the kernel layer loads exactly these
    # the artifact's identity: sha256 of the whole file as read (program, maps, manifest, seeds)
    sha256: str
    manifest: Manifest
    manifest_bytes: bytes
    license: str
    seeds: tuple[SeedSpec, ...]
    counter_slots: tuple[tuple[int, str], ...]  # (index, name), in index order
    # the parsed ELF, for what is read from it later (the program's relocations)
    obj: ObjectFile = field(repr=False, compare=False)

    @property
    def program(self) -> str:
        return self.manifest.program.name

    @property
    def section(self) -> str:
        return self.manifest.program.section

    @property
    def insn_count(self) -> int:
        return self.manifest.program.insn_count

    @property
    def maps(self) -> tuple[MapSpec, ...]:
        return self.manifest.maps

    @property
    def counters_map(self) -> str:
        return self.manifest.counters.map

    @property
    def policy_name(self) -> str:
        return self.manifest.policy.name

    @property
    def source_sha256(self) -> str:
        """The sha256 of the policy source the artifact was compiled from (not its identity)."""
        return self.manifest.policy.sha256

    def map(self, name: str) -> MapSpec:
        found = self.manifest.map(name)
        if found is None:
            raise KeyError(name)
        return found


def read_artifact(path: str | os.PathLike[str], map_definitions: bool = True) -> ArtifactSpec:
    """Read, parse and cross-check an artifact; raise ArtifactError on the first problem.

    `map_definitions=False` leaves out libbpf's reading of the BTF map definitions (a forked
    child, tens of ms): a live update never creates maps from them. Whoever loads the object
    calls `check_map_definitions` first.
    """
    where = os.fspath(path)
    try:
        data = read_bounded(where, ARTIFACT_LIMIT)
    except FileReadError as exc:
        raise ArtifactError(f"{where}: {exc}") from None
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
        obj = read_object(data)
    except ObjectError as exc:
        raise ArtifactError(f"not a readable ELF object ({exc})") from exc
    if obj.machine != "EM_BPF":
        raise ArtifactError(f"not a BPF object (machine {obj.machine})")
    if obj.symbols is None:
        raise ArtifactError("the symbol table is missing")
    raw, manifest = _manifest(obj.sections.get(MANIFEST_SECTION))
    _check_program(obj, manifest)
    for required in ("license", ".maps", ".BTF"):
        if required not in obj.sections:
            raise ArtifactError(f"section {required!r} is missing")
    license_text = bytes(obj.sections["license"].data).split(b"\0", 1)[0].decode(errors="replace")
    if not license_text:
        raise ArtifactError("the license section is empty")
    maps_index = obj.sections[".maps"].index
    _check_maps(manifest.maps, {name for name, idx in obj.symbols if idx == maps_index})
    by_name = {m.name: m for m in manifest.maps}
    seeds = tuple(_seed(seed, by_name, obj.sections) for seed in manifest.seeds)
    _check_claims(obj, manifest, seeds)
    return ArtifactSpec(
        path=where,
        data=data,
        sha256=hashlib.sha256(data).hexdigest(),
        manifest=manifest,
        manifest_bytes=raw,
        license=license_text,
        seeds=seeds,
        counter_slots=_counter_slots(manifest, by_name),
        obj=obj,
    )


def _manifest(section: Section | None) -> tuple[bytes, Manifest]:
    if section is None:
        raise ArtifactError(f"no manifest: section {MANIFEST_SECTION!r} is missing")
    if section.type != "SHT_PROGBITS" or section.flags & SHF_ALLOC:
        raise ArtifactError(f"section {MANIFEST_SECTION!r} must be non-allocated PROGBITS")
    raw = bytes(section.data).rstrip(b"\0")
    try:
        return raw, codec.decode(raw)
    except codec.ManifestError as exc:
        raise ArtifactError(str(exc)) from exc


def _check_program(obj: ObjectFile, manifest: Manifest) -> None:
    program = manifest.program
    section = obj.sections.get(program.section)
    if section is None:
        raise ArtifactError(f"program section {program.section!r} is missing")
    # The functions the program calls (.text) load with it and count with it.
    text = obj.sections.get(".text")
    insns = (len(section.data) + (len(text.data) if text is not None else 0)) // INSN_SIZE
    if insns != program.insn_count:
        raise ArtifactError(
            f"program section {program.section!r} and the functions it calls have {insns} "
            f"instructions, the manifest says {program.insn_count}"
        )
    if obj.symbols is None or (program.name, section.index) not in obj.symbols:
        raise ArtifactError(
            f"program {program.name!r} is not defined in section {program.section!r}"
        )


def _check_claims(obj: ObjectFile, manifest: Manifest, seeds: tuple[SeedSpec, ...]) -> None:
    """The manifest must claim what the program was compiled with (artifact/claims.py)."""
    program = obj.sections[manifest.program.section].data
    try:
        claims.check(program, manifest, {seed.section: seed.raw for seed in seeds})
    except claims.ClaimsError as exc:
        raise ArtifactError(str(exc)) from None


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
    try:
        actual = {m.name: m for m in libbpf_maps(data)}
    except MapDefinitionError as exc:
        raise ArtifactError(str(exc)) from exc
    for spec in maps:
        got = actual.get(spec.name)
        if got is None:
            raise ArtifactError(f"map {spec.name!r}: libbpf finds no such map definition")
        for attribute in ("type", "key_size", "value_size", "max_entries"):
            want, have = getattr(spec, attribute), getattr(got, attribute)
            if want != have:
                raise ArtifactError(
                    f"map {spec.name!r}: the manifest says {attribute} {want}, the ELF has {have}"
                )


def _seed(seed: SeedEntry, maps: dict[str, MapSpec], sections: dict[str, Section]) -> SeedSpec:
    name = seed.map
    target = maps.get(name)
    if target is None:
        raise ArtifactError(f"seed for map {name!r}: no such map in the manifest")
    if (seed.key_size, seed.value_size) != (target.key_size, target.value_size):
        raise ArtifactError(f"seed for map {name!r}: key/value sizes differ from the map's")
    section = sections.get(seed.section)
    if section is None:
        raise ArtifactError(f"seed for map {name!r}: section {seed.section!r} is missing")
    if seed.layout == IMAGE:
        if target.type != "array" or target.key_size != IMAGE_KEY_SIZE:
            raise ArtifactError(f"seed for map {name!r}: an image seeds only an array map")
        if seed.count > target.max_entries:
            raise ArtifactError(
                f"seed for map {name!r}: {seed.count} elements, the map holds {target.max_entries}"
            )
        want = seed.count * image_stride(seed.value_size)
    else:
        want = seed.count * (seed.key_size + seed.value_size)
    if len(section.data) != want:
        raise ArtifactError(
            f"seed section {seed.section!r} has {len(section.data)} bytes, expected {want} "
            f"({seed.count} {'elements' if seed.layout == IMAGE else 'records'})"
        )
    return SeedSpec(name, seed.section, seed.key_size, seed.value_size, section.data, seed.layout)


def _counter_slots(manifest: Manifest, maps: dict[str, MapSpec]) -> tuple[tuple[int, str], ...]:
    name = manifest.counters.map
    target = maps.get(name)
    if target is None:
        raise ArtifactError(f"counters map {name!r} is not in the manifest's maps")
    shape = ("percpu_array", COUNTER_KEY_SIZE, COUNTER.size)
    if (target.type, target.key_size, target.value_size) != shape:
        raise ArtifactError(
            f"counters map {name!r} must be a percpu_array with 4-byte keys and 16-byte values"
        )
    slots = manifest.counters.slots.pairs()
    indexes = [index for index, _ in slots]
    if len(set(indexes)) != len(indexes) or (indexes and indexes[-1] >= target.max_entries):
        raise ArtifactError(f"counter slots must be distinct indexes below {target.max_entries}")
    return tuple(slots)
