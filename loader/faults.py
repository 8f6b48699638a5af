"""Crash points for tests: `FWC_KILL_AT=<point>` makes fw-load SIGKILL itself at that point.

Read once at import; with the variable unset, `point()` is one comparison against None.
"""

from __future__ import annotations

import os
import signal

KILL_ENV = "FWC_KILL_AT"
_KILL_AT = os.environ.get(KILL_ENV) or None

# every point, in the order an apply meets them (tests iterate over these)
SWAP_POINTS = (
    "swap:pinned",  # staging holds prog, maps and meta; nothing swapped
    "swap:link-swapped",  # an interface runs the new program, pins describe the old
    "swap:counts-added",
    "swap:links-moved",  # the kept link pins are in staging, no longer in the policy's dir
    "swap:detached",  # interfaces no longer selected are detached
    "commit:old-renamed",  # between the two renames: no `<root>/<policy>` at all
    "commit:renamed",  # staging is the policy; the old one waits in trash
    "swap:committed",
)
LIVE_POINTS = (
    "live:idle-written",  # the idle generation holds the new tables; nothing flipped
    "live:flipped",  # the new rules are enforced, the manifest is the old one
    "live:digests",
    "live:meta-pinned",  # the new manifest is pinned in staging, not renamed yet
    "live:meta-renamed",  # the new manifest is the policy's; staging not removed yet
)
SET_POINTS = (
    "set:idle-written",  # the idle generation holds the changed set; nothing flipped
    "set:flipped",  # the changed set is enforced, the manifest is the old one
)


def point(name: str) -> None:
    """Die here (SIGKILL, no cleanup, as a crash or the OOM killer would) when asked to."""
    if _KILL_AT is not None and name == _KILL_AT:
        os.kill(os.getpid(), signal.SIGKILL)
