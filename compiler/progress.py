"""Progress of long work on a terminal: the current stage on one stderr line, after ~2 s.

Silent when stderr is not a terminal or `CI` is set, so logs and pipes never see it. No
thread: the line is redrawn when the work names a new stage, and by a SIGALRM interval
timer while one stage runs long (main thread only; elsewhere stage changes alone draw).
`FWC_PROGRESS_DELAY` (seconds) changes when the line first appears.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from types import FrameType, TracebackType
from typing import TextIO

DELAY = 2.0
INTERVAL = 0.5
_CLEAR = "\r\033[K"


def wanted(stream: TextIO) -> bool:
    """Whether progress belongs on `stream`: a terminal, outside CI."""
    if os.environ.get("CI"):
        return False
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def _delay() -> float:
    try:
        return max(0.0, float(os.environ.get("FWC_PROGRESS_DELAY", DELAY)))
    except ValueError:
        return DELAY


class Progress:
    """`with Progress("fwc check") as p: p.stage("3/10 a.yaml: rego")`; drawn when due."""

    def __init__(
        self,
        title: str,
        stream: TextIO | None = None,
        enabled: bool | None = None,
        clock: Callable[[], float] = time.monotonic,
        delay: float | None = None,
        timer: bool = True,
    ) -> None:
        self.title = title
        self.stream = stream if stream is not None else sys.stderr
        self.enabled = wanted(self.stream) if enabled is None else enabled
        self.clock = clock
        self.delay = _delay() if delay is None else delay
        self.current = ""
        self.drawn = False
        self._started = clock()
        self._last = float("-inf")
        self._timer = (
            timer and self.enabled and threading.current_thread() is threading.main_thread()
        )
        self._previous: signal.Handlers | Callable[[int, FrameType | None], object] | int | None
        self._previous = None

    def __enter__(self) -> Progress:
        self._started = self.clock()
        if self._timer:
            self._previous = signal.signal(signal.SIGALRM, self._on_alarm)
            signal.setitimer(signal.ITIMER_REAL, max(self.delay, 0.01), INTERVAL)
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def stage(self, name: str) -> None:
        """The work now does `name`; the line shows it once the work has run `delay`."""
        self.current = name
        self._draw(force=True)

    def clear(self) -> None:
        """Wipe the line before other output; the next stage draws it again."""
        if self.drawn:
            self.stream.write(_CLEAR)
            self.stream.flush()
            self.drawn = False

    def close(self) -> None:
        """Stop the timer and wipe the line, so what follows starts on a clean one."""
        if self._timer:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, self._previous or signal.SIG_DFL)
            self._timer = False
        self.clear()

    def _width(self) -> int:
        try:
            return os.get_terminal_size(self.stream.fileno()).columns or 80
        except (AttributeError, ValueError, OSError):
            return 80

    def _on_alarm(self, signum: int, frame: FrameType | None) -> None:
        self._draw(force=False)

    def _draw(self, force: bool) -> None:
        now = self.clock()
        elapsed = now - self._started
        if not self.enabled or elapsed < self.delay:
            return
        if not force and now - self._last < INTERVAL / 2:
            return
        self._last = now
        line = f"{self.title}: {self.current} ({elapsed:.0f} s)" if self.current else self.title
        # one line that never wraps, or the carriage return could not wipe it
        self.stream.write(f"{_CLEAR}{line[: self._width() - 1]}")
        self.stream.flush()
        self.drawn = True
