"""What `fw-load run` says about itself: alive (its loop's heartbeat), ready (the pinned policy
on every selected interface) and its recent events, read by the HTTP probes."""

from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from fwc.loader.apply.manifest_cache import ManifestCache
from fwc.loader.errors import LoaderError
from fwc.loader.node import attach, netlink, pins

# the loop beats every fraction of a second; an apply of a very large policy holds it for
# seconds, so only a loop stuck for a minute counts as dead
HEARTBEAT_LIMIT = 60.0
_EVENTS_KEPT = 32


@dataclass(frozen=True)
class Event:
    """Something the daemon did or refused, with wall-clock time."""

    at: float  # seconds since the epoch
    kind: str  # applied | rejected
    digest: str
    message: str
    reason: str = ""

    def as_dict(self) -> dict[str, Any]:
        fields = asdict(self)
        fields["time"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.at))
        return fields


class Health:
    """Written by the daemon loop, read by the HTTP threads."""

    def __init__(self, watch: Path | None) -> None:
        self._lock = threading.Lock()
        self._beat = time.monotonic()
        self._not_ready = "starting"
        self._events: deque[Event] = deque(maxlen=_EVENTS_KEPT)
        self._status: dict[str, Any] = {"watch": str(watch) if watch else None}

    def beat(self) -> None:
        with self._lock:
            self._beat = time.monotonic()

    def set_readiness(self, not_ready: str, **status: Any) -> None:
        """`not_ready` is the reason, "" when ready; `status` the fields /status shows."""
        with self._lock:
            self._not_ready = not_ready
            self._status.update(status)

    def record(self, event: Event) -> None:
        with self._lock:
            self._events.append(event)

    def alive(self) -> tuple[bool, str]:
        with self._lock:
            age = time.monotonic() - self._beat
        if age > HEARTBEAT_LIMIT:
            return False, f"the daemon loop has not run for {age:.0f} s"
        return True, "ok"

    def ready(self) -> tuple[bool, str]:
        with self._lock:
            reason = self._not_ready
        return (False, reason) if reason else (True, "ready")

    def status(self) -> dict[str, Any]:
        alive, _ = self.alive()
        ready, reason = self.ready()
        with self._lock:
            events = [e.as_dict() for e in self._events]
            return {
                **self._status,
                "alive": alive,
                "ready": ready,
                "reason": "" if ready else reason,
                "events": events,
            }


def not_ready(root: Path, policy: str, manifests: ManifestCache) -> str:
    """Why the policy is not in force on every interface it selects; "" when it is."""
    if not policy:
        return "no policy is applied"
    final = pins.policy_pins(root, policy)
    try:
        manifest = manifests.read(final.meta)
    except LoaderError as exc:
        return f"policy {policy}: {exc}"
    interfaces = netlink.list_interfaces()
    include = list(manifest.policy.interfaces.include)
    exclude = list(manifest.policy.interfaces.exclude)
    selected = netlink.select_interfaces(interfaces, include, exclude, require_up=False)
    if not selected:
        return f"policy {policy}: no interface matches it"
    held = attach.holders(root, interfaces)
    missing = [
        i.name for i in selected if i.index not in held or held[i.index].policy.dir != final.dir
    ]
    if missing:
        return f"policy {policy} is not attached on {', '.join(missing)}"
    return ""
