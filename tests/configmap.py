"""An emulated Kubernetes ConfigMap volume: files in a timestamped `..<stamp>` directory,
`..data` linking to it, and each file name a link through `..data`; an update writes a new
directory and replaces `..data` with one rename, as the kubelet does."""

from __future__ import annotations

import hashlib
import itertools
import os
import shutil
from pathlib import Path

_generation = itertools.count(1)


def sha256sum_line(data: bytes, name: str) -> str:
    """The digest file's text, as `sha256sum` prints it."""
    return f"{hashlib.sha256(data).hexdigest()}  {name}\n"


class ConfigMapVolume:
    """The mounted volume at `root`; `publish` swaps in a new set of files atomically."""

    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)

    def publish(self, files: dict[str, bytes]) -> None:
        stamp = self.root / f"..2026_12_05_{os.getpid() % 10000:04d}.{next(_generation):06d}"
        stamp.mkdir()
        for name, data in files.items():
            (stamp / name).write_bytes(data)
        data_link = self.root / "..data"
        old = data_link.resolve() if data_link.is_symlink() else None
        fresh = self.root / "..data_tmp"
        fresh.unlink(missing_ok=True)
        fresh.symlink_to(stamp.name)
        os.replace(fresh, data_link)
        for name in files:
            link = self.root / name
            if not link.is_symlink():
                link.symlink_to(f"..data/{name}")
        # a name the new set lacks dangles through ..data, as in a real volume
        if old is not None and old != stamp:
            shutil.rmtree(old, ignore_errors=True)

    def artifact(self, data: bytes, name: str = "fw.o", pin: bytes | None = None) -> None:
        """Publish an artifact with its digest (of `pin` when given, to pin the wrong bytes)."""
        self.publish({name: data, f"{name}.sha256": sha256sum_line(pin or data, name).encode()})

    def unpinned(self, data: bytes, name: str = "fw.o") -> None:
        self.publish({name: data})
