"""The interface list from one RTM_GETLINK dump on a plain netlink socket.

Every `fw-load apply` lists interfaces; importing pyroute2 for that alone took longer than
a whole live update may take.
"""

from __future__ import annotations

import os
import socket
import struct
from collections.abc import Iterator

NETLINK_ROUTE = 0
RTM_NEWLINK, RTM_GETLINK = 16, 18
NLM_F_REQUEST, NLM_F_DUMP = 0x1, 0x300
NLMSG_ERROR, NLMSG_DONE = 2, 3
IFLA_IFNAME, IFLA_LINKINFO, IFLA_XDP = 3, 18, 43
IFLA_INFO_KIND = 1
IFLA_XDP_ATTACHED, IFLA_XDP_PROG_ID, IFLA_XDP_DRV_PROG_ID, IFLA_XDP_SKB_PROG_ID = 2, 4, 5, 6
XDP_ATTACHED_MODES = {1: "native", 2: "generic", 3: "offload", 4: "multi"}
_NLMSG = struct.Struct("=IHHII")
_IFINFO = struct.Struct("=BxHiII")
_RTA = struct.Struct("=HH")
_NLA_TYPE_MASK = 0x3FFF  # strips NLA_F_NESTED and NLA_F_NET_BYTEORDER


# name, index, flags, kind, XDP program id, XDP mode: the fields of netlink.Interface
Link = tuple[str, int, int, str | None, int, str | None]


class NetlinkError(OSError):
    """The kernel answered the dump with an error."""


def _align(size: int) -> int:
    return (size + 3) & ~3


def attributes(data: bytes, offset: int, end: int) -> Iterator[tuple[int, bytes]]:
    """(type, payload) of each route attribute in data[offset:end]."""
    while offset + _RTA.size <= end:
        length, kind = _RTA.unpack_from(data, offset)
        if length < _RTA.size or offset + length > end:
            return
        yield kind & _NLA_TYPE_MASK, data[offset + _RTA.size : offset + length]
        offset += _align(length)


def _u32(payload: bytes) -> int:
    return int.from_bytes(payload[:4], "little") if len(payload) >= 4 else 0


def _link(data: bytes, offset: int, end: int) -> Link:
    """(name, index, flags, kind, xdp prog id, xdp mode) of one RTM_NEWLINK message body."""
    _, _, index, flags, _ = _IFINFO.unpack_from(data, offset)
    name, kind, prog_id, mode = "", None, 0, None
    for attr, payload in attributes(data, offset + _IFINFO.size, end):
        if attr == IFLA_IFNAME:
            name = payload.split(b"\0", 1)[0].decode(errors="replace")
        elif attr == IFLA_LINKINFO:
            for inner, value in attributes(payload, 0, len(payload)):
                if inner == IFLA_INFO_KIND:
                    kind = value.split(b"\0", 1)[0].decode(errors="replace")
        elif attr == IFLA_XDP:
            ids: dict[int, int] = {}
            attached = 0
            for inner, value in attributes(payload, 0, len(payload)):
                if inner == IFLA_XDP_ATTACHED and value:
                    attached = value[0]
                elif inner in (IFLA_XDP_PROG_ID, IFLA_XDP_DRV_PROG_ID, IFLA_XDP_SKB_PROG_ID):
                    ids[inner] = _u32(value)
            mode = XDP_ATTACHED_MODES.get(attached)
            prog_id = ids.get(IFLA_XDP_PROG_ID, 0)
            if mode == "multi":
                prog_id = ids.get(IFLA_XDP_DRV_PROG_ID) or ids.get(IFLA_XDP_SKB_PROG_ID) or 0
    return name, index, flags, kind, prog_id, mode


def links() -> list[Link]:
    """Every interface of this network namespace: (name, index, flags, kind, prog id, mode)."""
    with socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_ROUTE) as sock:
        sock.bind((0, 0))
        seq = 1
        body = _IFINFO.pack(socket.AF_UNSPEC, 0, 0, 0, 0)
        header = _NLMSG.pack(
            _NLMSG.size + len(body), RTM_GETLINK, NLM_F_REQUEST | NLM_F_DUMP, seq, 0
        )
        sock.sendall(header + body)
        found: list[Link] = []
        while True:
            data = sock.recv(1 << 17)
            offset = 0
            while offset + _NLMSG.size <= len(data):
                length, kind, _, msg_seq, _ = _NLMSG.unpack_from(data, offset)
                if length < _NLMSG.size:
                    raise NetlinkError("malformed netlink answer")
                end = offset + length
                if msg_seq == seq:
                    if kind == NLMSG_DONE:
                        return found
                    if kind == NLMSG_ERROR:
                        error = -int.from_bytes(
                            data[offset + 16 : offset + 20], "little", signed=True
                        )
                        if error:
                            raise NetlinkError(error, os.strerror(error))
                    elif kind == RTM_NEWLINK:
                        found.append(_link(data, offset + _NLMSG.size, end))
                offset += _align(length)
