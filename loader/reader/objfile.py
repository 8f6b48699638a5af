"""An ELF object's sections, defined symbols and relocations, read with pyelftools."""

from __future__ import annotations

import io
import struct
from dataclasses import dataclass
from typing import Any

from elftools.common.exceptions import ELFError
from elftools.construct.core import ConstructError
from elftools.elf.elffile import ELFFile
from elftools.elf.relocation import RelocationSection
from elftools.elf.sections import SymbolTableSection

# what pyelftools raises on damaged bytes besides its own errors
_DAMAGED = (ELFError, ConstructError, struct.error, ValueError, IndexError, KeyError, OverflowError)


class ObjectError(ValueError):
    """The bytes are not a readable 64-bit little-endian ELF object."""


@dataclass(frozen=True)
class Section:
    index: int
    name: str
    type: str  # pyelftools' name: "SHT_PROGBITS", "SHT_SYMTAB", ...
    flags: int
    data: memoryview  # a view into the object's bytes


@dataclass(frozen=True)
class ObjectFile:
    """The sections of an ELF object by name, and its symbols defined in a section."""

    machine: str  # "EM_BPF" for a BPF object
    sections: dict[str, Section]
    symbols: frozenset[tuple[str, int]] | None  # (name, section index); None: no .symtab
    elf: ELFFile

    def relocations(self, section: str) -> list[tuple[int, str]]:
        """(offset, symbol name) of every relocation of `section` (none without `.rel<section>`)."""
        try:
            rel = self.elf.get_section_by_name(f".rel{section}")
            if not isinstance(rel, RelocationSection):
                return []
            table = self.elf.get_section(rel["sh_link"])
            if not isinstance(table, SymbolTableSection):
                raise ObjectError(f"relocations of {section!r} name no symbol table")
            # every symbol parsed once: a program refers to each map many times
            names = [symbol.name for symbol in table.iter_symbols()]
            return [
                (entry["r_offset"], names[entry["r_info_sym"]]) for entry in rel.iter_relocations()
            ]
        except _DAMAGED as exc:
            raise ObjectError(str(exc) or type(exc).__name__) from exc


def read_object(data: bytes) -> ObjectFile:
    """Parse the section table and symbols of `data`; raise ObjectError when it cannot."""
    try:
        elf = ELFFile(io.BytesIO(data))
        if elf.elfclass != 64 or not elf.little_endian:
            raise ObjectError("not a 64-bit little-endian object")
        view = memoryview(data)
        sections = {s.name: _section(index, s, view) for index, s in enumerate(elf.iter_sections())}
        symtab = elf.get_section_by_name(".symtab")
        symbols = _defined(symtab) if isinstance(symtab, SymbolTableSection) else None
        return ObjectFile(str(elf["e_machine"]), sections, symbols, elf)
    except _DAMAGED as exc:
        raise ObjectError(str(exc) or type(exc).__name__) from exc


def _section(index: int, section: Any, view: memoryview) -> Section:
    header = section.header
    if header["sh_type"] == "SHT_NOBITS":
        data = view[:0]
    else:
        start, size = header["sh_offset"], header["sh_size"]
        if start + size > len(view):
            raise ObjectError(f"section {index} lies outside the file")
        data = view[start : start + size]
    return Section(index, section.name, str(header["sh_type"]), int(header["sh_flags"]), data)


def _defined(table: SymbolTableSection) -> frozenset[tuple[str, int]]:
    """(name, section index) of the named symbols that live in a real section."""
    # pyelftools gives reserved indexes (undefined, absolute, common) as names, not ints
    return frozenset(
        (sym.name, sym["st_shndx"])
        for sym in table.iter_symbols()
        if sym.name and isinstance(sym["st_shndx"], int) and sym["st_shndx"] > 0
    )
