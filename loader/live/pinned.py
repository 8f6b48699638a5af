"""The manifest fw-load pins: the artifact's, with the live maps, slots and fw-load's record."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

from fwc.artifact import codec
from fwc.artifact.manifest import LoaderRecord, Manifest, SlotTable
from fwc.loader import faults
from fwc.loader.kernel import libbpf
from fwc.loader.kernel.meta import create_meta_map
from fwc.loader.live.digest import program_sha256
from fwc.loader.node import pins
from fwc.loader.reader.artifact import ArtifactSpec


def initial_record(spec: ArtifactSpec) -> LoaderRecord:
    """fw-load's record for a freshly loaded artifact: its program digest, generation 0 live,
    and the artifact's identity."""
    return LoaderRecord(
        program_sha256=program_sha256(spec.obj, spec.section),
        generation=0,
        artifact_sha256=spec.sha256,
    )


def meta_manifest(manifest: Manifest, record: LoaderRecord) -> bytes:
    """The manifest fw-load pins, encoded: the artifact's plus fw-load's record."""
    return codec.encode(dataclasses.replace(manifest, fw_load=record))


def after_update(
    spec: ArtifactSpec, live: Manifest, mapping: dict[int, int] | None, record: LoaderRecord
) -> Manifest:
    """The new manifest as the kernel holds it after a live update: the live maps, the counter
    slots where they now count, and fw-load's record."""
    counters = spec.manifest.counters
    if mapping is not None:
        slots = SlotTable(
            tuple(map(mapping.__getitem__, counters.slots.index)), counters.slots.name
        )
        counters = dataclasses.replace(counters, slots=slots)
    return dataclasses.replace(spec.manifest, maps=live.maps, counters=counters, fw_load=record)


def replace_meta(root: Path, policy: pins.PolicyPins, pinned: Manifest) -> int:
    """Pin a new frozen meta map holding `pinned` in staging, then rename it over the
    policy's (atomic on bpffs); its map id."""
    staging = pins.staging_pins(root, policy.dir.name)
    staging.dir.mkdir(parents=True, exist_ok=True)
    try:
        fd = create_meta_map(codec.encode(pinned))
        try:
            meta_id = libbpf.map_info(fd).id
            libbpf.obj_pin(fd, staging.meta)
        finally:
            os.close(fd)
        faults.point("live:meta-pinned")
        os.rename(staging.meta, policy.meta)
        faults.point("live:meta-renamed")
    finally:
        pins.remove_tree(staging.dir)
    return meta_id
