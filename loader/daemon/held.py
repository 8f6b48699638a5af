"""The daemon's own references to its policy's kernel objects: if the pins vanish, the
program, maps and links live on in these fds, and are pinned again from them."""

from __future__ import annotations

import os
from pathlib import Path

from fwc.loader.errors import LoaderError
from fwc.loader.kernel import libbpf
from fwc.loader.node import pins


class Held:
    """fds of every pin of one policy, by path relative to its directory."""

    def __init__(self) -> None:
        self._policy: pins.PolicyPins | None = None
        self._fds: dict[Path, int] = {}

    def refresh(self, policy: pins.PolicyPins) -> None:
        """Hold what `policy` has pinned now (the pins are whole: a reconcile just ran)."""
        fds: dict[Path, int] = {}
        try:
            for path in _pinned(policy):
                fds[path.relative_to(policy.dir)] = libbpf.obj_get(path)
        except LoaderError:
            for fd in fds.values():
                os.close(fd)
            raise
        self.close()
        self._policy, self._fds = policy, fds

    def restore(self, policy: pins.PolicyPins) -> list[str]:
        """Pin again every held object whose pin is gone; one line per pin restored. A link
        whose interface is gone is left unpinned (the reconcile forgets it)."""
        if self._policy is None or self._policy.dir != policy.dir:
            return []
        restored: list[str] = []
        for relative, fd in sorted(self._fds.items()):
            path = policy.dir / relative
            if path.exists():
                continue
            if relative.parts[0] == "links":
                info = libbpf.link_info(fd)
                if not info.ifindex:
                    continue
            path.parent.mkdir(parents=True, exist_ok=True)
            libbpf.obj_pin(fd, path)
            restored.append(str(relative))
        if restored:
            policy.make_dirs()
        return restored

    def close(self) -> None:
        for fd in self._fds.values():
            os.close(fd)
        self._fds.clear()
        self._policy = None


def _pinned(policy: pins.PolicyPins) -> list[Path]:
    found = [policy.prog, policy.meta]
    for directory in (policy.maps_dir, policy.links_dir):
        if directory.is_dir():
            found.extend(sorted(directory.iterdir()))
    return [p for p in found if p.exists() and not p.is_dir()]
