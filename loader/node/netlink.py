"""Interfaces through rtnetlink (pyroute2): discovery, glob selection, XDP state, link events."""

from __future__ import annotations

import fnmatch
import select
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from pyroute2 import IPRoute
from pyroute2.netlink.exceptions import NetlinkError
from pyroute2.netlink.rtnl import RTMGRP_LINK

from fwc.loader.errors import LoaderError
from fwc.loader.kernel.resource import Closing

IFF_UP = 0x1
IFF_LOOPBACK = 0x8

XDP_FLAGS_UPDATE_IF_NOEXIST = 1 << 0
XDP_FLAGS_SKB_MODE = 1 << 1
XDP_FLAGS_DRV_MODE = 1 << 2
XDP_FLAGS_HW_MODE = 1 << 3
XDP_FLAGS_REPLACE = 1 << 4

# IFLA_XDP_ATTACHED as pyroute2 decodes it -> the mode names fw-load reports
_MODES = {"xdp": "native", "xdpgeneric": "generic", "xdpoffload": "offload", "xdpmulti": "multi"}
MODE_FLAGS = {
    "native": XDP_FLAGS_DRV_MODE,
    "generic": XDP_FLAGS_SKB_MODE,
    "offload": XDP_FLAGS_HW_MODE,
}


@dataclass(frozen=True)
class Interface:
    """One network interface and the XDP program the kernel says it runs."""

    name: str
    index: int
    flags: int
    kind: str | None
    xdp_prog_id: int
    xdp_mode: str | None  # native | generic | offload | multi, None when nothing is attached

    @property
    def up(self) -> bool:
        return bool(self.flags & IFF_UP)

    @property
    def loopback(self) -> bool:
        return bool(self.flags & IFF_LOOPBACK)


@dataclass(frozen=True)
class LinkEvent:
    """RTM_NEWLINK (`new`) or RTM_DELLINK (`del`) for one interface."""

    kind: str
    interface: Interface


def _interface(msg: Any) -> Interface:
    xdp = msg.get_attr("IFLA_XDP")
    prog_id, mode = 0, None
    if xdp is not None:
        attached = xdp.get_attr("IFLA_XDP_ATTACHED")
        mode = _MODES.get(attached) if attached else None
        prog_id = xdp.get_attr("IFLA_XDP_PROG_ID") or 0
        if mode == "multi":
            prog_id = (
                xdp.get_attr("IFLA_XDP_DRV_PROG_ID") or xdp.get_attr("IFLA_XDP_SKB_PROG_ID") or 0
            )
    info = msg.get_attr("IFLA_LINKINFO")
    return Interface(
        name=msg.get_attr("IFLA_IFNAME"),
        index=msg["index"],
        flags=msg["flags"],
        kind=info.get_attr("IFLA_INFO_KIND") if info is not None else None,
        xdp_prog_id=prog_id,
        xdp_mode=mode,
    )


def list_interfaces() -> list[Interface]:
    """Every interface of this network namespace, by index."""
    try:
        with IPRoute() as ipr:
            found = [_interface(msg) for msg in ipr.get_links()]
    except NetlinkError as exc:
        raise LoaderError(f"cannot list interfaces: {exc.args[-1]}") from exc
    except OSError as exc:
        raise LoaderError(f"cannot list interfaces: {exc.strerror or exc}") from exc
    return sorted(found, key=lambda i: i.index)


def get_interface(index: int) -> Interface | None:
    """The interface with `index`, or None when it is gone."""
    with IPRoute() as ipr:
        try:
            msgs = ipr.get_links(index)
        except NetlinkError:
            return None
    return _interface(msgs[0]) if msgs else None


def addresses(indexes: Iterable[int]) -> list[str]:
    """The IP addresses configured on the interfaces with these indexes."""
    wanted = set(indexes)
    with IPRoute() as ipr:
        return [
            str(msg.get_attr("IFA_ADDRESS"))
            for msg in ipr.get_addr()
            if msg["index"] in wanted and msg.get_attr("IFA_ADDRESS")
        ]


def matches(name: str, include: Sequence[str], exclude: Sequence[str]) -> bool:
    """Whether a name passes the include/exclude globs (empty include: every name)."""
    if include and not any(fnmatch.fnmatchcase(name, g) for g in include):
        return False
    return not any(fnmatch.fnmatchcase(name, g) for g in exclude)


def select_interfaces(
    interfaces: Iterable[Interface],
    include: Sequence[str],
    exclude: Sequence[str],
    require_up: bool,
) -> list[Interface]:
    """The interfaces a policy attaches to: loopback only when `include` names it (no glob
    picks it up); without `include`, only ones up when `require_up` (apply), every one when
    not (the daemon protects them before they are up).
    """
    chosen: list[Interface] = []
    for iface in interfaces:
        if iface.loopback and iface.name not in include:
            continue
        if not matches(iface.name, include, exclude):
            continue
        if not include and require_up and not iface.up:
            continue
        chosen.append(iface)
    return chosen


def set_xdp_fd(index: int, prog_fd: int, mode: str, expected_fd: int | None) -> None:
    """Attach (or with prog_fd -1, remove) a program through IFLA_XDP, replacing atomically
    (XDP_FLAGS_REPLACE) when `expected_fd` names the program that must be there now."""
    flags = MODE_FLAGS.get(mode, 0)
    attrs: list[tuple[str, int]] = [("IFLA_XDP_FD", prog_fd)]
    if expected_fd is not None:
        flags |= XDP_FLAGS_REPLACE
        attrs.append(("IFLA_XDP_EXPECTED_FD", expected_fd))
    attrs.append(("IFLA_XDP_FLAGS", flags))
    with IPRoute() as ipr:
        try:
            ipr.link("set", index=index, xdp={"attrs": attrs})
        except NetlinkError as exc:
            raise LoaderError(
                f"cannot set the XDP program of ifindex {index}: {exc.args[-1]}"
            ) from exc


class LinkEvents(Closing):
    """A subscription to RTM_NEWLINK/RTM_DELLINK; `wait()` returns the events that arrived."""

    def __init__(self) -> None:
        self._ipr = IPRoute()
        self._ipr.bind(groups=RTMGRP_LINK)

    def fileno(self) -> int:
        return int(self._ipr.fileno())

    def wait(self, timeout: float) -> list[LinkEvent]:
        """Events received within `timeout` seconds (an empty list when none)."""
        ready, _, _ = select.select([self._ipr], [], [], timeout)
        if not ready:
            return []
        events: list[LinkEvent] = []
        for msg in self._ipr.get():
            kind = {"RTM_NEWLINK": "new", "RTM_DELLINK": "del"}.get(msg.get("event", ""))
            if kind and msg.get_attr("IFLA_IFNAME"):
                events.append(LinkEvent(kind, _interface(msg)))
        return events

    def close(self) -> None:
        self._ipr.close()
