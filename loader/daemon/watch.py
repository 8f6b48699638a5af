"""`fw-load run --watch PATH`: follow an artifact file that is replaced atomically, and apply
each new one whose sha256 matches the digest pinned beside it (`PATH.sha256`).

The watch polls about once a second instead of using inotify. A Kubernetes ConfigMap or
Secret volume replaces its `..data` symlink, so the artifact path never changes itself and an
inotify watch on it (or on the file it resolved to) misses the swap; a bind mount or a file
dropped with rename by an init container each need other watches. Two stat calls and one
small read a second see all of them alike, with no dependency and no watch to re-arm.
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from fwc.loader.apply.transaction import ApplyReport, LockoutRefused
from fwc.loader.daemon.health import Event, Health
from fwc.loader.daemon.metrics import DaemonMetrics
from fwc.loader.errors import LoaderError

POLL_SECONDS = 1.0
PIN_SUFFIX = ".sha256"
# why a watched artifact was not applied: the `reason` label of fwc_watch_rejected_total
REASONS = ("unpinned", "unreadable", "digest_mismatch", "invalid", "lockout")
_HEX = re.compile(r"[0-9a-f]{64}")


@dataclass(frozen=True)
class Fingerprint:
    """What a poll compares: where the path leads, that file's size and mtime, and the digest
    file's own fingerprint (its text is read only when one of these changes)."""

    resolved: str
    size: int
    mtime_ns: int
    pin: tuple[str, int, int]


@dataclass(frozen=True)
class Rejection:
    """A watched artifact the daemon did not apply; the running policy stayed."""

    reason: str  # one of REASONS
    message: str
    digest: str  # the artifact's sha256, "" when it could not be read


@dataclass(frozen=True)
class Verified:
    """An artifact whose bytes hash to its pinned digest."""

    data: bytes
    digest: str


def pin_path(path: Path) -> Path:
    """The digest file beside the artifact path (beside the link, not its target)."""
    return path.with_name(path.name + PIN_SUFFIX)


def parse_pin(text: str) -> str | None:
    """The hex digest of a sha256sum line (`<hex>  <name>`) or of a bare hex digest."""
    fields = text.split()
    if not fields:
        return None
    digest = fields[0].lower().removeprefix("sha256:")
    return digest if _HEX.fullmatch(digest) else None


def _stat_key(path: Path) -> tuple[str, int, int]:
    try:
        st = path.stat()
        return (os.path.realpath(path), st.st_size, st.st_mtime_ns)
    except OSError:
        return ("", -1, -1)


def fingerprint(path: Path) -> Fingerprint:
    resolved, size, mtime = _stat_key(path)
    return Fingerprint(resolved, size, mtime, _stat_key(pin_path(path)))


def verify(path: Path) -> Verified | Rejection:
    """Read the artifact once and check it against its pinned digest; what is applied is these
    very bytes, so a swap after this read cannot slip an unchecked file in."""
    try:
        pinned_text = pin_path(path).read_text()
    except FileNotFoundError:
        pinned_text = None
    except (OSError, UnicodeDecodeError) as exc:
        return Rejection("unpinned", f"{pin_path(path)}: cannot read the pinned digest: {exc}", "")
    try:
        data = path.read_bytes()
    except OSError as exc:
        return Rejection("unreadable", f"{path}: {exc.strerror or exc}", "")
    digest = hashlib.sha256(data).hexdigest()
    if pinned_text is None:
        return Rejection("unpinned", f"{path}: no pinned digest at {pin_path(path)}", digest)
    pinned = parse_pin(pinned_text)
    if pinned is None:
        return Rejection(
            "unpinned", f"{pin_path(path)}: not a sha256 digest (expected `<hex>  <name>`)", digest
        )
    if pinned != digest:
        return Rejection(
            "digest_mismatch",
            f"{path}: sha256 {digest} is not the pinned {pinned}; refusing an artifact CI "
            "did not approve",
            digest,
        )
    return Verified(data, digest)


Apply = Callable[[Path], ApplyReport]


@dataclass(frozen=True)
class Applied:
    report: ApplyReport
    digest: str


class Watcher:
    """Polls one artifact path; applies a new pinned artifact, or says why it did not."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.seen: Fingerprint | None = None
        self.digest = ""  # the artifact digest applied last (from this path)
        self.rejection: Rejection | None = None  # of the artifact the path holds now
        self._pending: Rejection | None = None

    def poll(self, apply: Apply) -> Applied | Rejection | None:
        """Look at the path; None when nothing changed (or it holds what is applied).

        A file and its digest replaced one after the other (by rename, not as one ConfigMap
        swap) disagree for a moment: a refusal of the pin is reported only once the path has
        held still for one more poll."""
        current = fingerprint(self.path)
        if current == self.seen:
            pending, self._pending = self._pending, None
            if pending is not None:
                self.rejection = pending
            return pending
        self.seen = current
        checked = verify(self.path)
        if isinstance(checked, Rejection):
            self._pending = checked
            return None
        self._pending = None
        if checked.digest == self.digest:
            self.rejection = None
            return None
        outcome = _apply_bytes(checked, apply)
        if isinstance(outcome, Rejection):
            self.rejection = outcome
            return outcome
        self.digest, self.rejection = checked.digest, None
        return Applied(outcome, checked.digest)


def _apply_bytes(checked: Verified, apply: Apply) -> ApplyReport | Rejection:
    # a private copy: the watched file may be swapped again while the transaction reads it
    with tempfile.TemporaryDirectory(prefix="fwc-watch-") as tmp:
        copy = Path(tmp) / f"{checked.digest[:16]}.o"
        copy.write_bytes(checked.data)
        try:
            return apply(copy)
        except LockoutRefused as exc:
            return Rejection("lockout", str(exc), checked.digest)
        except LoaderError as exc:
            return Rejection("invalid", str(exc).replace(str(copy), "the artifact"), checked.digest)


def follow(
    watcher: Watcher,
    apply: Apply,
    metrics: DaemonMetrics,
    health: Health,
    say: Callable[[str], None],
) -> ApplyReport | None:
    """One poll, said three ways when something happened: a log line, the metrics and an
    event; the report of a new policy applied, else None."""
    started = time.monotonic()
    outcome = watcher.poll(apply)
    if outcome is None:
        return None
    if isinstance(outcome, Rejection):
        metrics.rejected.labels(outcome.reason).inc()
        if outcome.reason in ("invalid", "lockout"):
            result = "refused" if outcome.reason == "lockout" else "error"
            metrics.applied(result, time.monotonic() - started)
        running = f"{watcher.digest[:12]} stays" if watcher.digest else "what is pinned stays"
        say(f"watch: rejected {watcher.path} ({outcome.reason}): {outcome.message}; {running}")
        health.record(
            Event(time.time(), "rejected", outcome.digest, outcome.message, outcome.reason)
        )
        return None
    report = outcome.report
    metrics.applied("ok", time.monotonic() - started)
    metrics.digest(outcome.digest, str(watcher.path))
    message = f"applied {report.policy} ({report.describe_path()}) from {watcher.path}"
    say(f"watch: {message}, sha256 {outcome.digest}")
    health.record(Event(time.time(), "applied", outcome.digest, message))
    return report


def not_ready(watcher: Watcher) -> str:
    """Why the watched path is not what runs; "" when it is."""
    if watcher.rejection is not None:
        running = (
            f"{watcher.digest[:12]} still runs"
            if watcher.digest
            else "the policy pinned before, if any, still runs"
        )
        return (
            f"the artifact at {watcher.path} was rejected ({watcher.rejection.reason}); {running}"
        )
    if not watcher.digest:
        return f"no pinned artifact applied from {watcher.path} yet"
    return ""
