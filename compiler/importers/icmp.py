"""ICMP and ICMPv6 type names as iptables and nft spell them: name -> (type, code or None)."""

from __future__ import annotations

ICMP_NAMES: dict[str, tuple[int, int | None]] = {
    "any": (-1, None),
    "echo-reply": (0, None),
    "pong": (0, None),
    "destination-unreachable": (3, None),
    "network-unreachable": (3, 0),
    "host-unreachable": (3, 1),
    "protocol-unreachable": (3, 2),
    "port-unreachable": (3, 3),
    "fragmentation-needed": (3, 4),
    "source-quench": (4, None),
    "redirect": (5, None),
    "echo-request": (8, None),
    "ping": (8, None),
    "router-advertisement": (9, None),
    "router-solicitation": (10, None),
    "time-exceeded": (11, None),
    "ttl-exceeded": (11, None),
    "ttl-zero-during-transit": (11, 0),
    "parameter-problem": (12, None),
    "timestamp-request": (13, None),
    "timestamp-reply": (14, None),
    "info-request": (15, None),
    "info-reply": (16, None),
    "address-mask-request": (17, None),
    "address-mask-reply": (18, None),
}

ICMPV6_NAMES: dict[str, tuple[int, int | None]] = {
    "any": (-1, None),
    "destination-unreachable": (1, None),
    "no-route": (1, 0),
    "port-unreachable": (1, 4),
    "packet-too-big": (2, None),
    "time-exceeded": (3, None),
    "ttl-exceeded": (3, None),
    "parameter-problem": (4, None),
    "echo-request": (128, None),
    "echo-reply": (129, None),
    "mld-listener-query": (130, None),
    "mld-listener-report": (131, None),
    "mld-listener-done": (132, None),
    "mld-listener-reduction": (132, None),
    "router-solicitation": (133, None),
    "nd-router-solicit": (133, None),
    "router-advertisement": (134, None),
    "nd-router-advert": (134, None),
    "neighbour-solicitation": (135, None),
    "neighbor-solicitation": (135, None),
    "nd-neighbor-solicit": (135, None),
    "neighbour-advertisement": (136, None),
    "neighbor-advertisement": (136, None),
    "nd-neighbor-advert": (136, None),
    "redirect": (137, None),
    "nd-redirect": (137, None),
    "mld2-listener-report": (143, None),
}


def icmp_type(text: str, v6: bool) -> tuple[int, int | None]:
    """(type, code or None) of `8`, `3/4` or a name; type -1 is "any". ValueError if unknown."""
    names = ICMPV6_NAMES if v6 else ICMP_NAMES
    if text in names:
        return names[text]
    kind, _, code = text.partition("/")
    number = int(kind)
    if not 0 <= number <= 255 or (code and not 0 <= int(code) <= 255):
        raise ValueError(text)
    return number, int(code) if code else None
