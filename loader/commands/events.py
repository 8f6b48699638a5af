"""`fw-load events`: follows the verdict events of an applied policy's `log: true` rules, each
stamped with wall-clock time (the program records CLOCK_MONOTONIC)."""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from types import FrameType

from fwc.loader.errors import LoaderError
from fwc.loader.kernel import libbpf
from fwc.loader.kernel.events import Event, EventError, decode
from fwc.loader.kernel.meta import read_meta_map
from fwc.loader.kernel.ringbuf import RingBuffer
from fwc.loader.node.bpffs import require_bpffs
from fwc.loader.node.pins import PolicyPins, checked_name, pin_root, policies, policy_pins

EVENTS_MAP = "fwc_events"
# How often the loop looks at the stop flag and the deadline while no event comes.
POLL_MS = 200


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--policy", metavar="NAME", help="the applied policy (needed when several)")
    parser.add_argument("--json", action="store_true", help="one JSON object per line")
    parser.add_argument("--pin-root", metavar="DIR", help="bpffs directory fw-load pins under")
    parser.add_argument("--count", type=int, metavar="N", help="stop after N events")
    parser.add_argument("--duration", type=float, metavar="SECONDS", help="stop after this long")


def run(args: argparse.Namespace) -> int:
    """Prints events until SIGINT or SIGTERM (or --count / --duration); 0 when stopped so."""
    if args.count is not None and args.count < 1:
        raise LoaderError(f"--count must be at least 1, not {args.count}")
    if args.duration is not None and args.duration < 0:
        raise LoaderError(f"--duration cannot be negative ({args.duration})")
    if args.policy:
        checked_name(args.policy)
    root = pin_root(args.pin_root)
    require_bpffs(root)
    pins = _selected(root, args.policy)
    manifest = read_meta_map(pins.meta) if pins.meta.exists() else None
    if manifest is None:
        raise LoaderError(f"policy {pins.dir.name!r} has no manifest pin at {pins.meta}")
    if manifest.map(EVENTS_MAP) is None:
        raise LoaderError(f"policy {pins.dir.name!r} has no rule with `log: true`: no events")
    names = [rule.name for rule in manifest.rules.rows()]
    deadline = None if args.duration is None else time.monotonic() + args.duration
    fd = libbpf.obj_get(pins.map(EVENTS_MAP))
    try:
        follow(fd, names, args.json, args.count, deadline)
    finally:
        os.close(fd)
    return 0


def follow(
    map_fd: int, names: list[str], as_json: bool, count: int | None, deadline: float | None
) -> int:
    """Prints the events of the ring buffer `map_fd` until a stop; the number printed."""
    printed = 0

    def show(record: bytes) -> bool:
        """False once `count` events are printed, so the rest stay in the ring."""
        nonlocal printed
        try:
            event = decode(record, names)
        except EventError as exc:
            print(f"fw-load events: skipped a record: {exc}", file=sys.stderr)
            return True
        print(_line(event, as_json, wall_clock_offset()), flush=True)
        printed += 1
        return count is None or printed < count

    with _stop_on_signals() as stopped, RingBuffer(map_fd, show) as ring:
        while not stopped() and (count is None or printed < count):
            wait = POLL_MS
            if deadline is not None:
                left = deadline - time.monotonic()
                if left <= 0:
                    ring.consume()
                    break
                wait = min(wait, max(1, int(left * 1000)))
            ring.poll(wait)
    return printed


def wall_clock_offset() -> int:
    """Nanoseconds from CLOCK_MONOTONIC (bpf_ktime_get_ns, the events' clock) to the wall
    clock; read for every event, so a step of the wall clock (NTP) shows at once."""
    return time.time_ns() - time.clock_gettime_ns(time.CLOCK_MONOTONIC)


def wall_time(unix_ns: int) -> str:
    """RFC 3339 UTC with microseconds."""
    seconds, ns = divmod(unix_ns, 1_000_000_000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{ns // 1000:06d}Z"


def _line(event: Event, as_json: bool, offset_ns: int) -> str:
    unix_ns = event.time_ns + offset_ns
    if as_json:
        fields = {**event.to_json(), "time": wall_time(unix_ns), "time_unix_ns": unix_ns}
        return json.dumps(fields, sort_keys=True)
    return event.text(wall_time(unix_ns))


def _selected(root: Path, name: str | None) -> PolicyPins:
    if name:
        pins = policy_pins(root, name)
        if not pins.exists():
            raise LoaderError(f"policy {name!r} is not applied (nothing pinned at {pins.dir})")
        return pins
    applied = list(policies(root))
    if not applied:
        raise LoaderError(f"no policy is applied (nothing pinned under {root})")
    if len(applied) > 1:
        listed = ", ".join(sorted(p.dir.name for p in applied))
        raise LoaderError(f"several policies are applied ({listed}); choose one with --policy")
    return applied[0]


@contextmanager
def _stop_on_signals() -> Iterator[Callable[[], bool]]:
    """SIGINT and SIGTERM set a flag the loop reads (a poll they interrupt returns early)."""
    stop = False

    def handler(_signum: int, _frame: FrameType | None) -> None:
        nonlocal stop
        stop = True

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield lambda: stop
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)
