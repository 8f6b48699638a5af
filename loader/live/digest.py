"""The program's digest: what a live update compares to know the program did not change."""

from __future__ import annotations

import hashlib

from fwc.artifact import claims
from fwc.loader.errors import LoaderError
from fwc.loader.reader.objfile import ObjectError, ObjectFile, read_object


def program_sha256(source: bytes | ObjectFile, section: str) -> str:
    """Digest of the program: its section's bytes and every relocation (offset, symbol name).

    `source` is the object's bytes, or the object as the reader parsed it.
    """
    try:
        obj = source if isinstance(source, ObjectFile) else read_object(source)
        program = obj.sections.get(section)
        if program is None:
            raise LoaderError(f"{section!r}: no such section")
        # the claims digest changes with the rules, not the code: left out
        digest = hashlib.sha256(claims.masked(program.data))
        for offset, name in obj.relocations(section):
            digest.update(offset.to_bytes(8, "little") + name.encode() + b"\0")
    except ObjectError as exc:
        raise LoaderError(f"{section!r}: {exc}") from exc
    return digest.hexdigest()
