"""Never lock the operator out: run the management session's packets through the new program."""

from __future__ import annotations

import ipaddress
import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from fwc.loader.errors import LoaderError

XDP_ABORTED, XDP_DROP = 0, 1
TCP_FIN, TCP_SYN, TCP_RST, TCP_PSH, TCP_ACK = 0x01, 0x02, 0x04, 0x08, 0x10
_EPHEMERAL_PORT = 50022

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


@dataclass(frozen=True)
class Session:
    """A TCP session to keep: client -> server:port, and where it came from."""

    client: IPAddress
    client_port: int
    server: IPAddress
    server_port: int
    origin: str  # "SSH_CONNECTION" or "--keep-access ADDR:PORT"

    def describe(self) -> str:
        return (
            f"{_hostport(self.client, self.client_port)} -> "
            f"{_hostport(self.server, self.server_port)} ({self.origin})"
        )


@dataclass(frozen=True)
class Blocked:
    session: Session
    packet: str  # "new connection (SYN)" | "established session (ACK)" | ...
    rate_limited: bool = False  # it passed, but by a rate limit's token


def _hostport(addr: IPAddress, port: int) -> str:
    return f"[{addr}]:{port}" if addr.version == 6 else f"{addr}:{port}"


def _address(text: str, what: str) -> IPAddress:
    try:
        return ipaddress.ip_address(text.strip("[]").split("%", 1)[0])
    except ValueError as exc:
        raise LoaderError(f"{what}: {text!r} is not an IP address") from exc


def _port(text: str, what: str) -> int:
    if not text.isdigit() or not 0 < int(text) < 65536:
        raise LoaderError(f"{what}: {text!r} is not a port (1-65535)")
    return int(text)


def from_ssh_connection(value: str) -> Session | None:
    """The session in SSH_CONNECTION (`client_ip client_port server_ip server_port`);
    None for a loopback session, which XDP on a real interface never sees."""
    fields = value.split()
    if len(fields) != 4:
        raise LoaderError(f"SSH_CONNECTION {value!r} is not 'client port server port'")
    # a dual-stack sshd reports an IPv4 session as ::ffff:a.b.c.d: the wire carries IPv4
    client = _unmap(_address(fields[0], "SSH_CONNECTION"))
    server = _unmap(_address(fields[2], "SSH_CONNECTION"))
    if client.is_loopback or server.is_loopback:
        return None
    return Session(
        client,
        _port(fields[1], "SSH_CONNECTION"),
        server,
        _port(fields[3], "SSH_CONNECTION"),
        "SSH_CONNECTION",
    )


def _unmap(addr: IPAddress) -> IPAddress:
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        return addr.ipv4_mapped
    return addr


def from_keep_access(spec: str, local: Sequence[IPAddress]) -> list[Session]:
    """Sessions for `--keep-access ADDR:PORT` (ADDR the client, PORT the local service),
    one per local address of the same family (the unspecified address when there is none)."""
    what = f"--keep-access {spec}"
    host, sep, port = spec.rpartition(":")
    if not sep or not host:
        raise LoaderError(f"{what}: expected ADDR:PORT (IPv6 as [ADDR]:PORT)")
    client = _unmap(_address(host, what))
    server_port = _port(port, what)
    servers = [a for a in local if a.version == client.version]
    if not servers:
        servers = [ipaddress.ip_address("0.0.0.0" if client.version == 4 else "::")]
    return [Session(client, _EPHEMERAL_PORT, s, server_port, what) for s in servers]


def _checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return int(~total & 0xFFFF)


def tcp_frame(session: Session, flags: int) -> bytes:
    """An Ethernet frame carrying one TCP segment from the client to the server."""
    tcp = struct.pack(
        "!HHIIBBHHH",
        session.client_port,
        session.server_port,
        1000,
        2000 if flags & TCP_ACK else 0,
        5 << 4,
        flags,
        65535,
        0,
        0,
    )
    src, dst = session.client.packed, session.server.packed
    if session.client.version == 4:
        ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(tcp), 1, 0x4000, 64, 6, 0, src, dst)
        ip = ip[:10] + struct.pack("!H", _checksum(ip)) + ip[12:]
        pseudo = src + dst + struct.pack("!BBH", 0, 6, len(tcp))
        ethertype = 0x0800
    else:
        ip = struct.pack("!IHBB16s16s", 6 << 28, len(tcp), 6, 64, src, dst)
        pseudo = src + dst + struct.pack("!IxxxB", len(tcp), 6)
        ethertype = 0x86DD
    tcp = tcp[:16] + struct.pack("!H", _checksum(pseudo + tcp)) + tcp[18:]
    eth = bytes.fromhex("020000000001") + bytes.fromhex("020000000002")
    return eth + struct.pack("!H", ethertype) + ip + tcp


_PACKETS = (
    ("new connection (SYN)", TCP_SYN),
    ("established session (ACK)", TCP_ACK),
    ("established session (PSH|ACK)", TCP_PSH | TCP_ACK),
    ("session close (FIN|ACK)", TCP_FIN | TCP_ACK),
    ("session reset (RST)", TCP_RST),
)


def blocked(
    sessions: Sequence[Session],
    verdict: Callable[[bytes], int],
    limited: Callable[[], bool] | None = None,
) -> list[Blocked]:
    """The session packets that `verdict` (the new program's XDP action) would drop, or that
    pass only by a rate limit's token (`limited`): a session throttled to a few packets a
    second is as lost as a dropped one."""
    found: list[Blocked] = []
    for session in sessions:
        for label, flags in _PACKETS:
            action = verdict(tcp_frame(session, flags))
            if action in (XDP_ABORTED, XDP_DROP):
                found.append(Blocked(session, label))
            elif limited is not None and limited():
                found.append(Blocked(session, label, rate_limited=True))
    return found


def blocked_on(
    sessions: Sequence[Session],
    verdict: Callable[[bytes, int], int],
    ingress: Callable[[Session], Sequence[int]],
    limited: Callable[[], bool] | None = None,
) -> list[Blocked]:
    """`blocked`, with each session's packets run as arriving on every interface of
    `ingress(session)` (ifindexes): a packet dropped on any of them is dropped."""
    found: list[Blocked] = []
    for session in sessions:
        where = list(ingress(session))

        def worst(frame: bytes, where: list[int] = where) -> int:
            actions = [verdict(frame, ifindex) for ifindex in where]
            return next((a for a in actions if a in (XDP_ABORTED, XDP_DROP)), actions[0])

        found += blocked([session], worst, limited)
    return found


def refusal(found: Sequence[Blocked]) -> str:
    """The one-line message refusing an apply that would lock the operator out."""
    dropped = [f"{b.packet} of {b.session.describe()}" for b in found if not b.rate_limited]
    limited = [f"{b.packet} of {b.session.describe()}" for b in found if b.rate_limited]
    what = "; ".join(
        ([f"drop {'; '.join(dropped)}"] if dropped else [])
        + ([f"rate-limit {'; '.join(limited)}"] if limited else [])
    )
    return f"refusing to attach: the new policy would {what}; pass --force to attach anyway"
