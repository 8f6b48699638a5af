"""What `fw-load run` keeps warm between control requests: each policy's parsed live manifest.

A manifest is kept with the id of the meta map it came from. Every apply pins a new frozen meta
map (new id), whoever runs it, so an unchanged id proves the kept manifest is the live one.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

from fwc.artifact.manifest import Manifest
from fwc.loader.kernel import libbpf
from fwc.loader.kernel.meta import read_meta_fd


class ManifestCache:
    """Decoded manifests by meta pin."""

    def __init__(self) -> None:
        self._kept: dict[Path, tuple[int, Manifest]] = {}
        self._lock = threading.Lock()

    def read(self, pin: Path) -> Manifest:
        """The manifest of the meta map pinned at `pin`, parsed only when the map changed."""
        fd = libbpf.obj_get(pin)
        try:
            map_id = libbpf.map_info(fd).id
            with self._lock:
                kept = self._kept.get(pin)
            if kept is not None and kept[0] == map_id:
                return kept[1]
            manifest = read_meta_fd(fd)
        finally:
            os.close(fd)
        with self._lock:
            self._kept[pin] = (map_id, manifest)
        return manifest

    def keep(self, pin: Path, map_id: int, manifest: Manifest) -> None:
        """Remember `manifest` as what the meta map `map_id`, just pinned at `pin`, holds."""
        with self._lock:
            self._kept[pin] = (map_id, manifest)

    def kept_id(self, pin: Path) -> int | None:
        """The id of the meta map whose manifest is kept for `pin` (the last read or kept)."""
        with self._lock:
            kept = self._kept.get(pin)
        return None if kept is None else kept[0]

    def forget(self, pin: Path) -> None:
        with self._lock:
            self._kept.pop(pin, None)
