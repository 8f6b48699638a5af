"""What each generation of a pinned tables policy holds, as chunk digests in a pinned map.

A live update compares them with the new seeds and rewrites only the chunks that changed.
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
from pathlib import Path

from fwc.loader.errors import LoaderError
from fwc.loader.kernel import libbpf
from fwc.loader.reader.artifact import ArtifactSpec
from fwc.loader.reader.seeds import Buffer

MAP_NAME = "fwc_digests"
CHUNK = 1024  # records per digest
_VALUE_SIZE = 1 << 20  # room for about 50,000 chunk digests per generation
_KEY = struct.Struct("<I")

# seed map (generation-0 name) -> digests of its record chunks, or its one whole-seed
# digest, as last written
Digests = dict[str, list[str]]
# marks a whole-seed digest (of an image, or of records written through mmap) apart from
# the digests of record chunks (written by batch)
WHOLE = "whole:"


def chunk_digests(records: Buffer, step: int) -> list[str]:
    """Digests of each CHUNK records (the last chunk may be shorter); 64 bits of sha256 each."""
    size = CHUNK * step
    view = memoryview(records)
    return [hashlib.sha256(view[i : i + size]).hexdigest()[:16] for i in range(0, len(view), size)]


def whole_digest(data: Buffer) -> str:
    """The one digest of a seed compared whole."""
    return WHOLE + hashlib.sha256(data).hexdigest()


def seed_digests(spec: ArtifactSpec) -> Digests:
    """The digests of an artifact's seeds as LoadedProgram writes them (generation 0): an
    image whole, as a live update writes it, so it never becomes records."""
    return {
        s.map: [whole_digest(s.image)]
        if s.image is not None
        else chunk_digests(s.records, s.key_size + s.value_size)
        for s in spec.seeds
    }


def create(generation0: Digests) -> int:
    """A new digest map: generation 0 known, generation 1 unknown; the caller owns the fd."""
    fd = libbpf.map_create(libbpf.BPF_MAP_TYPE_ARRAY, MAP_NAME, _KEY.size, _VALUE_SIZE, 2)
    try:
        write(fd, 0, generation0)
    except BaseException:
        os.close(fd)
        raise
    return fd


def open_pinned(pin: Path) -> int | None:
    """The pinned digest map's fd, or None when the policy has none (or it is not ours)."""
    if not pin.exists():
        return None
    fd = libbpf.obj_get(pin)
    info = libbpf.map_info(fd)
    if (info.name, info.value_size, info.max_entries) != (MAP_NAME, _VALUE_SIZE, 2):
        os.close(fd)
        return None
    return fd


def open_or_pin(pin: Path) -> int:
    """The pinned digest map's fd; a policy pinned without one gets one (nothing known)."""
    fd = open_pinned(pin)
    if fd is None:
        fd = create({})
        try:
            libbpf.obj_pin(fd, pin)
        except LoaderError:
            os.close(fd)
            raise
    return fd


def read(fd: int, generation: int) -> Digests:
    """What `generation` holds; empty when unknown."""
    raw = libbpf.map_lookup(fd, _KEY.pack(generation), _VALUE_SIZE) or b""
    try:
        found = json.loads(raw.split(b"\0", 1)[0] or b"{}")
    except (UnicodeDecodeError, json.JSONDecodeError):
        return {}
    return found if isinstance(found, dict) else {}


def write(fd: int, generation: int, digests: Digests) -> None:
    """Record what `generation` holds; digests that do not fit are recorded as unknown."""
    raw = json.dumps(digests, separators=(",", ":")).encode()
    if len(raw) >= _VALUE_SIZE:
        raw = b"{}"
    try:
        libbpf.map_update(fd, _KEY.pack(generation), raw.ljust(_VALUE_SIZE, b"\0"))
    except LoaderError as exc:
        raise LoaderError(f"cannot record the table digests: {exc}") from exc
