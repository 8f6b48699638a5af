"""What this process wrote into or matched in the idle generations, kept by whole-seed digest.

A warm `fw-load run` reuses it from one request to the next: a seed equal to what the idle
generation is recorded to hold is then found by one memory compare, not a digest.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from fwc.loader.live import digests as table_digests


class Seen:
    """Seeds this process wrote or matched, by whole-seed digest.

    Only bytes whose digest was computed from them are kept, so a hit vouches exactly as an
    equal digest would.
    """

    def __init__(self) -> None:
        self._by_digest: dict[str, bytes] = {}

    def held(self, known: list[str]) -> bytes | None:
        """The records the idle generation holds, when its one whole-seed digest is kept."""
        return self._by_digest.get(known[0]) if len(known) == 1 else None

    def add(self, digest: str, records: bytes) -> None:
        self._by_digest[digest] = records

    def prune(self, digests: set[str]) -> None:
        """Forget what neither generation of the policy just updated holds."""
        self._by_digest = {d: b for d, b in self._by_digest.items() if d in digests}


# one per process: what a warm daemon carries between requests
SEEN = Seen()


@dataclass(frozen=True)
class Pending:
    """A whole-seed digest still to compute: after the flip, before it is recorded."""

    records: bytes

    def digest(self) -> str:
        return table_digests.whole_digest(self.records)


def unchanged(data: bytes, known: list[str]) -> bool:
    """Whether the idle generation is recorded to hold exactly `data` (an mmap-written seed):
    one memory compare with the bytes this process kept, or, when it has not seen them, one
    digest (then kept)."""
    held = SEEN.held(known)
    if held is not None:
        return held == data
    if len(known) == 1 and known[0].startswith(table_digests.WHOLE):
        whole = Pending(data).digest()
        if known == [whole]:
            SEEN.add(whole, data)
            return True
    return False


def resolve(written: Mapping[str, list[str] | Pending]) -> table_digests.Digests:
    """The digests of what each seed map now holds, computing the pending ones (kept too)."""
    out: table_digests.Digests = {}
    for name, tracked in written.items():
        if isinstance(tracked, Pending):
            digest = tracked.digest()
            SEEN.add(digest, tracked.records)
            tracked = [digest]
        out[name] = tracked
    return out


def wholes(digests: Mapping[str, Any]) -> set[str]:
    """The whole-seed digests among a generation's recorded digests."""
    return {d[0] for d in digests.values() if isinstance(d, list) and len(d) == 1}
