"""A minimal reader of 64-bit little-endian ELF objects: sections, symbols, relocations.

fw-load reads an artifact on every apply; pyelftools alone took longer to import than a
whole live update may take, and this needs only `struct`.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

EM_BPF = 247
SHT_PROGBITS, SHT_SYMTAB, SHT_NOBITS, SHT_REL = 1, 2, 8, 9
_SHN_LORESERVE = 0xFF00
_HEADER = struct.Struct("<16sHHIQQQIHHHHHH")
_SECTION = struct.Struct("<IIQQQQIIQQ")
_SYMBOL = struct.Struct("<IBBHQQ")
_REL = struct.Struct("<QQ")


class ElfError(ValueError):
    """The bytes are not a readable 64-bit little-endian ELF object."""


@dataclass(frozen=True)
class Section:
    index: int
    name: str
    type: int
    flags: int
    offset: int
    size: int
    link: int


@dataclass(frozen=True)
class Symbol:
    name: str
    section: int  # 0 when undefined, or a reserved index (absolute, common)


class ElfFile:
    """The section table of `data`, parsed once; section bytes are sliced on request."""

    def __init__(self, data: bytes) -> None:
        if len(data) < _HEADER.size or data[:4] != b"\x7fELF":
            raise ElfError("no ELF magic")
        ident, _, machine, _, _, _, shoff, _, _, _, _, shentsize, shnum, shstrndx = (
            _HEADER.unpack_from(data)
        )
        if ident[4] != 2 or ident[5] != 1:
            raise ElfError("not a 64-bit little-endian object")
        if shentsize != _SECTION.size or shoff + shnum * shentsize > len(data):
            raise ElfError("the section table lies outside the file")
        self.data = data
        self._view = memoryview(data)
        self.machine = machine
        raw = [_SECTION.unpack_from(data, shoff + i * shentsize) for i in range(shnum)]
        if not 0 < shstrndx < shnum:
            raise ElfError("no section name table")
        names_at, names_size = raw[shstrndx][4], raw[shstrndx][5]
        names = data[names_at : names_at + names_size]
        self.sections: list[Section] = []
        for index, (name, kind, flags, _, offset, size, link, _, _, _) in enumerate(raw):
            if kind != SHT_NOBITS and offset + size > len(data):
                raise ElfError(f"section {index} lies outside the file")
            self.sections.append(
                Section(index, _cstr(names, name), kind, flags, offset, size, link)
            )
        self.by_name = {s.name: s for s in self.sections}

    def section_data(self, section: Section) -> memoryview:
        """The section's bytes, a view into the file's (no copy)."""
        if section.type == SHT_NOBITS:
            return self._view[:0]
        return self._view[section.offset : section.offset + section.size]

    def symbols(self, table: Section) -> list[Symbol]:
        """Every entry of a symbol table, with its name and section index."""
        if table.type != SHT_SYMTAB or not 0 <= table.link < len(self.sections):
            raise ElfError(f"section {table.name!r} is not a symbol table")
        strings = bytes(self.section_data(self.sections[table.link]))
        raw = self.section_data(table)
        return [
            Symbol(_cstr(strings, name), shndx)
            for name, _, _, shndx, _, _ in _SYMBOL.iter_unpack(raw[: len(raw) // 24 * 24])
        ]

    def relocations(self, section: Section) -> list[tuple[int, int]]:
        """(offset, symbol index) of every entry of a SHT_REL section."""
        raw = self.section_data(section)
        return [
            (offset, info >> 32) for offset, info in _REL.iter_unpack(raw[: len(raw) // 16 * 16])
        ]


def defined(symbol: Symbol) -> bool:
    """Whether the symbol lives in a real section (not undefined, absolute or common)."""
    return 0 < symbol.section < _SHN_LORESERVE


def _cstr(table: bytes, offset: int) -> str:
    end = table.find(b"\0", offset)
    return table[offset : end if end >= 0 else len(table)].decode(errors="replace")
