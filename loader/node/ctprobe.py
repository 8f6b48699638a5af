"""Whether this kernel can give a stateful artifact its connection state: conntrack, and the
`bpf_xdp_ct_lookup` kfunc in the kernel's BTF."""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

KFUNC = "bpf_xdp_ct_lookup"
_BTF_MAGIC = 0xEB9F
_HEADER = struct.Struct("<HBBIIIII")
_TYPE = struct.Struct("<III")
_KIND_FUNC = 12
# bytes that follow a type's 12-byte header, per kind: (fixed, per member)
_TRAILER = {
    1: (4, 0),  # INT
    3: (12, 0),  # ARRAY
    4: (0, 12),  # STRUCT
    5: (0, 12),  # UNION
    6: (0, 8),  # ENUM
    13: (0, 8),  # FUNC_PROTO
    14: (4, 0),  # VAR
    15: (0, 12),  # DATASEC
    17: (4, 0),  # DECL_TAG
    19: (0, 12),  # ENUM64
}


@dataclass(frozen=True)
class Host:
    """Where the kernel answers; tests point these at files of their own."""

    vmlinux_btf: Path = Path("/sys/kernel/btf/vmlinux")
    module_btf: Path = Path("/sys/kernel/btf/nf_conntrack")
    conntrack_max: Path = Path("/proc/sys/net/netfilter/nf_conntrack_max")
    nft: str = "nft"


def refusal(host: Host) -> str:
    """Why this kernel cannot run a stateful artifact, or "" when it can."""
    if not host.conntrack_max.exists():
        return (
            f"the kernel has no connection tracking ({host.conntrack_max} is absent: "
            "CONFIG_NF_CONNTRACK off or the nf_conntrack module not loaded)"
        )
    base = _read(host.vmlinux_btf)
    if base is None:
        return f"the kernel exposes no BTF ({host.vmlinux_btf} is absent: CONFIG_DEBUG_INFO_BTF)"
    if _has_func(base, KFUNC, 0):
        return ""
    module = _read(host.module_btf)
    if module is not None and _has_func(module, KFUNC, _strings_length(base)):
        return ""
    return (
        f"the kernel lacks the {KFUNC} kfunc (in neither {host.vmlinux_btf} nor "
        f"{host.module_btf}; it needs Linux 6.0 or later with CONFIG_NF_CONNTRACK and BTF)"
    )


def _read(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except OSError:
        return None


def _header(data: bytes) -> tuple[int, int, int, int, int] | None:
    """(header length, type offset, type length, string offset, string length), or None."""
    if len(data) < _HEADER.size:
        return None
    magic, _version, _flags, hdr_len, type_off, type_len, str_off, str_len = _HEADER.unpack_from(
        data
    )
    if magic != _BTF_MAGIC or hdr_len + max(type_off + type_len, str_off + str_len) > len(data):
        return None
    return hdr_len, type_off, type_len, str_off, str_len


def _strings_length(data: bytes) -> int:
    header = _header(data)
    return header[4] if header else 0


def _has_func(data: bytes, name: str, base_strings: int) -> bool:
    """Whether BTF `data` (split BTF over a base with `base_strings` bytes of strings)
    declares a FUNC called `name`."""
    header = _header(data)
    if header is None:
        return False
    hdr_len, type_off, type_len, str_off, str_len = header
    strings = data[hdr_len + str_off : hdr_len + str_off + str_len]
    at = strings.find(b"\0" + name.encode() + b"\0")
    if at < 0:
        # a fast no: the name is nowhere among the strings
        return False
    wanted = base_strings + at + 1
    start = hdr_len + type_off
    return any(
        kind == _KIND_FUNC and name_off == wanted
        for kind, name_off in _types(data, start, start + type_len)
    )


def _types(data: bytes, offset: int, end: int) -> Iterator[tuple[int, int]]:
    """(kind, name offset) of each type in data[offset:end]."""
    while offset + _TYPE.size <= end:
        name_off, info, _size = _TYPE.unpack_from(data, offset)
        kind, members = (info >> 24) & 0x1F, info & 0xFFFF
        fixed, each = _TRAILER.get(kind, (0, 0))
        offset += _TYPE.size + fixed + each * members
        yield kind, name_off
