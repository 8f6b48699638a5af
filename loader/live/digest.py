"""The program's digest: what a live update compares to know the program did not change."""

from __future__ import annotations

import hashlib

from fwc.loader.errors import LoaderError
from fwc.loader.reader.objfile import ObjectError, read_object


def program_sha256(data: bytes, section: str) -> str:
    """Digest of the program: its section's bytes and every relocation (offset, symbol name)."""
    try:
        obj = read_object(data)
        program = obj.sections.get(section)
        if program is None:
            raise LoaderError(f"{section!r}: no such section")
        digest = hashlib.sha256(program.data)
        for offset, name in obj.relocations(section):
            digest.update(offset.to_bytes(8, "little") + name.encode() + b"\0")
    except ObjectError as exc:
        raise LoaderError(f"{section!r}: {exc}") from exc
    return digest.hexdigest()
