"""XDP attachment: BPF links in the best mode, atomic program swaps, and who holds an interface."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from fwc.loader.errors import LoaderError
from fwc.loader.kernel import libbpf
from fwc.loader.node import cttable, netlink, pins
from fwc.loader.node.netlink import Interface

# enum bpf_attach_type BPF_XDP in the 6.x uapi headers
BPF_XDP_ATTACH = 37
BPF_LINK_TYPE_XDP = 6


@dataclass(frozen=True)
class Holder:
    """How an fwc program holds XDP on one interface: a pinned BPF link, or (after
    `--replace-foreign`) a plain netlink attachment of a pinned program."""

    kind: str  # link | netlink
    policy: pins.PolicyPins
    prog_id: int
    link_pin: Path | None = None


def _fd_of(path: Path) -> int:
    return libbpf.obj_get(path)


def pinned_prog_id(policy: pins.PolicyPins) -> int:
    """The id of a policy's pinned program, or 0 when its pin is unreadable."""
    try:
        fd = _fd_of(policy.prog)
    except LoaderError:
        return 0
    try:
        return libbpf.prog_info(fd).id
    finally:
        os.close(fd)


def pinned_link(path: Path) -> libbpf.LinkInfo | None:
    """What a pinned link holds (ifindex 0 once its interface is gone), or None if unreadable."""
    try:
        fd = _fd_of(path)
    except LoaderError:
        return None
    try:
        return libbpf.link_info(fd)
    except LoaderError:
        return None
    finally:
        os.close(fd)


def holders(root: Path, interfaces: list[Interface]) -> dict[int, Holder]:
    """ifindex -> the fwc program holding XDP there, from the pins under `root` and netlink."""
    by_index = {i.index: i for i in interfaces}
    found: dict[int, Holder] = {}
    prog_ids: dict[int, pins.PolicyPins] = {}
    # ifindexes are per namespace: another namespace's link pins say nothing about ours
    for policy in pins.own_policies(root):
        prog_id = pinned_prog_id(policy)
        if prog_id:
            prog_ids[prog_id] = policy
        for name in policy.linked_interfaces():
            info = pinned_link(policy.link(name))
            if info is None or info.ifindex not in by_index:
                continue
            if by_index[info.ifindex].xdp_prog_id == info.prog_id:
                found[info.ifindex] = Holder("link", policy, info.prog_id, policy.link(name))
    for iface in interfaces:
        if iface.index not in found and iface.xdp_prog_id in prog_ids:
            found[iface.index] = Holder("netlink", prog_ids[iface.xdp_prog_id], iface.xdp_prog_id)
    return found


def attached_anywhere(root: Path, policy: str) -> bool:
    """Whether an interface of this namespace runs `policy`'s program now."""
    held = holders(root, netlink.list_interfaces())
    return any(h.policy.dir.name == policy for h in held.values())


def abandoned(policy: pins.PolicyPins) -> bool:
    """Whether another namespace's policy is left behind: it has link pins and every one is
    defunct (its interface gone, as when the namespace itself is gone). A policy attached
    through netlink alone cannot be judged from here, and counts as in use."""
    names = policy.linked_interfaces()
    if not names:
        return False
    for name in names:
        info = pinned_link(policy.link(name))
        if info is not None and info.ifindex != 0:
            return False
    return True


def claim(policy: pins.PolicyPins) -> None:
    """Make sure this namespace may apply `policy`: refuse a name another live namespace
    owns under the same pin root; unpin one whose namespace is gone."""
    if not policy.exists() or policy.mine():
        return
    if not abandoned(policy):
        raise LoaderError(
            f"policy {policy.dir.name} under {policy.dir.parent} is applied in another network "
            f"namespace (netns cookie {policy.owner()}); refusing to take it over: use another "
            "policy name or another --pin-root in this namespace"
        )
    pins.remove_tree(policy.dir)


def _modes(offload: bool) -> list[str]:
    return ["offload"] if offload else ["native", "generic"]


def attach_link(prog_fd: int, iface: Interface, offload: bool) -> tuple[int, str]:
    """A new XDP link on `iface` in the best mode that works: (link fd, mode)."""
    errors: list[str] = []
    for mode in _modes(offload):
        try:
            fd = libbpf.link_create(prog_fd, iface.index, BPF_XDP_ATTACH, netlink.MODE_FLAGS[mode])
        except libbpf.KernelError as exc:
            errors.append(f"{mode}: {os.strerror(exc.errno) if exc.errno else exc}")
            if exc.errno in (16, 17):  # EBUSY/EEXIST: something is attached already
                break
            continue
        return fd, mode
    raise LoaderError(f"interface {iface.name} is not XDP-capable ({'; '.join(errors)})")


def attach_pinned(prog_fd: int, iface: Interface, offload: bool, pin: Path) -> str:
    """A new XDP link on `iface`, pinned at `pin` so it outlives this process; its mode.

    A link that cannot be pinned is detached again: nothing stays attached unowned.
    """
    link_fd, mode = attach_link(prog_fd, iface, offload)
    try:
        libbpf.obj_pin(link_fd, pin)
    except LoaderError:
        libbpf.link_detach(link_fd)
        raise
    finally:
        os.close(link_fd)
    return mode


def swap_link(link_pin: Path, new_prog_fd: int, old_prog_id: int) -> None:
    """Replace the program of a pinned link atomically, only if it still runs `old_prog_id`."""
    link_fd = _fd_of(link_pin)
    try:
        old_fd = libbpf.prog_get_fd_by_id(old_prog_id)
        try:
            libbpf.link_update(link_fd, new_prog_fd, old_fd)
        finally:
            os.close(old_fd)
    finally:
        os.close(link_fd)


def swap_netlink(iface: Interface, new_prog_fd: int, old_prog_id: int) -> None:
    """Replace the program attached through netlink atomically (XDP_FLAGS_REPLACE)."""
    old_fd = libbpf.prog_get_fd_by_id(old_prog_id)
    try:
        netlink.set_xdp_fd(iface.index, new_prog_fd, iface.xdp_mode or "native", old_fd)
    finally:
        os.close(old_fd)


def detach_link(link_pin: Path) -> None:
    """Detach a pinned link and remove its pin."""
    try:
        fd = _fd_of(link_pin)
    except LoaderError:
        fd = -1
    try:
        if fd >= 0:
            libbpf.link_detach(fd)
    except libbpf.KernelError as exc:
        if exc.errno != 22:  # EINVAL: already defunct (its interface is gone)
            raise
    finally:
        if fd >= 0:
            os.close(fd)
        link_pin.unlink(missing_ok=True)


def detach_netlink(iface: Interface, prog_id: int) -> None:
    """Remove a netlink-attached program, only if it is still `prog_id`."""
    old_fd = libbpf.prog_get_fd_by_id(prog_id)
    try:
        netlink.set_xdp_fd(iface.index, -1, iface.xdp_mode or "native", old_fd)
    finally:
        os.close(old_fd)


def detach(iface: Interface | None, holder: Holder) -> None:
    """Detach whatever `holder` says fwc holds on `iface`."""
    if holder.kind == "link" and holder.link_pin is not None:
        detach_link(holder.link_pin)
    elif iface is not None:
        detach_netlink(iface, holder.prog_id)


def release(root: Path, names: set[str] | None, policy: str | None) -> list[tuple[str, str]]:
    """Detach fwc programs (from `names`, or everywhere when None; of `policy`, or of every
    policy) and unpin; a policy left attached nowhere loses all its pins.
    Returns (policy, interface) for each detachment."""
    interfaces = netlink.list_interfaces()
    by_index = {i.index: i for i in interfaces}
    done: list[tuple[str, str]] = []
    for index, holder in sorted(holders(root, interfaces).items()):
        iface = by_index[index]
        if policy is not None and holder.policy.dir.name != policy:
            continue
        if names is not None and iface.name not in names:
            continue
        detach(iface, holder)
        done.append((holder.policy.dir.name, iface.name))
    current = {i.xdp_prog_id for i in netlink.list_interfaces()}
    for pinned in pins.own_policies(root):
        if policy is not None and pinned.dir.name != policy:
            continue
        for name in pinned.linked_interfaces():
            info = pinned_link(pinned.link(name))
            # a stale pin: its interface is gone or runs something else now
            if info is None or info.ifindex not in by_index or info.prog_id not in current:
                pinned.link(name).unlink(missing_ok=True)
        if not pinned.linked_interfaces() and pinned_prog_id(pinned) not in current:
            had = cttable.had_table(pinned)
            pins.remove_tree(pinned.dir)
            if had:
                cttable.forget(pinned.dir.name)
    return done
