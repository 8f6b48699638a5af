"""Where fw-load pins what it owns: `<root>/<policy>/{prog,meta,maps/<map>,links/<ifname>}`."""

from __future__ import annotations

import fcntl
import functools
import os
import shutil
import socket
import struct
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from fwc.artifact.names import PolicyNameError, check_policy_name, is_policy_name
from fwc.loader import faults
from fwc.loader.errors import LoaderError
from fwc.loader.node import bpffs

DEFAULT_ROOT = Path("/sys/fs/bpf/fwc")
ROOT_ENV = "FWC_PIN_ROOT"
# bpffs refuses names with a dot (it keeps them for itself): these prefixes cannot be policy
# names, and a dot in an interface name (eth0.100) is stored as a colon, which no ifname holds
_STAGING_PREFIX = "_staging-"
_TRASH_PREFIX = "_trash-"
# getsockopt(SOL_SOCKET, SO_NETNS_COOKIE): a 64-bit id of a network namespace, never reused
_SO_NETNS_COOKIE = 71


@functools.cache
def netns_cookie() -> int:
    """The kernel's id of this process's network namespace (its cookie: unlike the nsfs
    inode, never given to another namespace while the host runs)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        raw = sock.getsockopt(socket.SOL_SOCKET, _SO_NETNS_COOKIE, 8)
    return int(struct.unpack("=Q", raw)[0])


def pin_root(override: str | os.PathLike[str] | None = None) -> Path:
    """The pin root: `--pin-root`, else `$FWC_PIN_ROOT`, else /sys/fs/bpf/fwc."""
    if override:
        return Path(override)
    env = os.environ.get(ROOT_ENV)
    return Path(env) if env else DEFAULT_ROOT


@dataclass(frozen=True)
class PolicyPins:
    """The pin paths of one policy directory (final or staging)."""

    dir: Path

    @property
    def prog(self) -> Path:
        return self.dir / "prog"

    @property
    def meta(self) -> Path:
        return self.dir / "meta"

    @property
    def maps_dir(self) -> Path:
        return self.dir / "maps"

    @property
    def links_dir(self) -> Path:
        return self.dir / "links"

    @property
    def netns_dir(self) -> Path:
        """`netns/<cookie>`: an empty directory naming the network namespace that owns the
        policy (bpffs holds no plain files; a directory name is the record)."""
        return self.dir / "netns"

    def owner(self) -> int | None:
        """The cookie of the network namespace that applied the policy; None for pins
        written before fw-load recorded it."""
        try:
            names = [p.name for p in self.netns_dir.iterdir()]
        except OSError:
            return None
        cookies = [int(n) for n in names if n.isdigit()]
        return cookies[0] if len(cookies) == 1 else None

    def mine(self) -> bool:
        """Whether this network namespace owns the policy (unrecorded pins count as ours)."""
        owner = self.owner()
        return owner is None or owner == netns_cookie()

    def map(self, name: str) -> Path:
        return self.maps_dir / name

    def link(self, ifname: str) -> Path:
        return self.links_dir / ifname.replace(".", ":")

    def exists(self) -> bool:
        return self.prog.exists()

    def linked_interfaces(self) -> list[str]:
        """Names of the interfaces with a link pin, sorted."""
        if not self.links_dir.is_dir():
            return []
        return sorted(p.name.replace(":", ".") for p in self.links_dir.iterdir())

    def make_dirs(self) -> None:
        """The directories of a new transaction, owned by this network namespace."""
        self.maps_dir.mkdir(parents=True, exist_ok=True)
        self.links_dir.mkdir(parents=True, exist_ok=True)
        (self.netns_dir / str(netns_cookie())).mkdir(parents=True, exist_ok=True)


def policy_pins(root: Path, policy: str) -> PolicyPins:
    """The pins of `policy`; LoaderError unless it is a policy name (no path ever escapes
    the root, nor lands on a staging or trash directory)."""
    return PolicyPins(root / checked_name(policy))


def staging_pins(root: Path, policy: str) -> PolicyPins:
    """A fresh staging directory for a transaction on `policy` (never seen by status)."""
    return PolicyPins(root / f"{_STAGING_PREFIX}{checked_name(policy)}-{os.getpid()}")


def checked_name(policy: str) -> str:
    """`policy` if it is a policy name (artifact/names.py), else LoaderError."""
    try:
        return check_policy_name(policy)
    except PolicyNameError as exc:
        raise LoaderError(str(exc)) from None


def policies(root: Path) -> Iterator[PolicyPins]:
    """Every committed policy under `root`, by name."""
    if not root.is_dir():
        return
    for entry in sorted(root.iterdir()):
        # fw-load's own staging and trash directories are no policy names, nor is anything
        # fw-load did not make
        if entry.is_dir() and is_policy_name(entry.name):
            yield PolicyPins(entry)


def own_policies(root: Path) -> Iterator[PolicyPins]:
    """The committed policies this network namespace owns: the only ones a command here
    may change (the pin root may be shared by every namespace on the host)."""
    return (policy for policy in policies(root) if policy.mine())


def remove_tree(path: Path) -> None:
    """Unpin everything under `path` (bpffs supports unlink and rmdir like any filesystem)."""
    if path.is_dir():
        shutil.rmtree(path, ignore_errors=False)
    elif path.exists():
        path.unlink()


def trash_dir(final: PolicyPins, pid: int | None = None) -> Path:
    """Where a commit by process `pid` (this one by default) moves the old pins away."""
    return final.dir.parent / f"{_TRASH_PREFIX}{final.dir.name}-{pid or os.getpid()}"


def commit(staging: PolicyPins, final: PolicyPins) -> None:
    """Make `staging` the policy's pins and drop the old ones (renames are atomic on bpffs).

    The caller has already moved the link pins it keeps into `staging`; whatever is left in
    `final` is unpinned with it.
    """
    trash = trash_dir(final)
    if final.dir.exists():
        final.dir.rename(trash)
    faults.point("commit:old-renamed")
    staging.dir.rename(final.dir)
    faults.point("commit:renamed")
    remove_tree(trash)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@dataclass(frozen=True)
class Leftover:
    """A staging or trash directory of a fw-load process that is gone."""

    path: Path
    kind: str  # staging | trash
    policy: str
    pid: int


def leftovers(root: Path) -> list[Leftover]:
    """Staging and trash directories whose process is gone (or is this one), sorted."""
    if not root.is_dir():
        return []
    found: list[Leftover] = []
    for entry in sorted(root.iterdir()):
        for kind, prefix in (("staging", _STAGING_PREFIX), ("trash", _TRASH_PREFIX)):
            if not entry.name.startswith(prefix):
                continue
            policy, _, pid = entry.name[len(prefix) :].rpartition("-")
            if not pid.isdigit() or (_alive(int(pid)) and int(pid) != os.getpid()):
                continue
            found.append(Leftover(entry, kind, policy, int(pid)))
    return found


@contextmanager
def locked(root: Path) -> Iterator[None]:
    """Serialise fw-load processes that change pins under `root` (apply, run, detach).

    The root is created only on a bpffs and used only there: a bpffs unmounted under a
    running fw-load leaves a plain directory that must never pass for a pin root.
    """
    if not root.exists():
        parent = root.parent
        while not parent.exists():
            parent = parent.parent
        if not bpffs.on_bpffs(parent):
            raise LoaderError(f"{parent} is not on a BPF filesystem; not creating {root} there")
        root.mkdir(parents=True, exist_ok=True)
    if not bpffs.on_bpffs(root):
        raise LoaderError(f"{root} is not on a BPF filesystem (unmounted?)")
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)
