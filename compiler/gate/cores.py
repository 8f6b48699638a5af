"""How many cores besides this process's own sat idle while `fwc check` read the policy.

`fwc check` imports this module (with the Rego gate) before it reads any policy, so the
CPU idle time that /proc/stat counts between the import and the gate measures what the
other cores did while this process parsed: a direct answer to whether a second gate
process would find a core of its own. The load average answers worse (it also counts
the last minute of this run's own work, and of whatever ran just before it), and the
running count of /proc/loadavg sees one instant; they are the fallback.
"""

from __future__ import annotations

import os
import time

PROC_STAT = "/proc/stat"
LOADAVG = "/proc/loadavg"
# The window must be long enough for the 10 ms ticks of /proc/stat to mean something,
# and recent enough to say something about the next seconds.
MIN_WINDOW = 0.3
MAX_WINDOW = 10.0

# (monotonic seconds, idle seconds of the allowed cores), or None without /proc/stat.
Snapshot = tuple[float, float] | None


def snapshot() -> Snapshot:
    """Now, and the idle (and I/O wait) seconds summed over the cores this process may use."""
    try:
        with open(PROC_STAT, encoding="ascii") as f:
            lines = f.read().splitlines()
        allowed = os.sched_getaffinity(0)
        idle = 0
        for line in lines:
            fields = line.split()
            name = fields[0] if fields else ""
            if name[:3] == "cpu" and name[3:].isdigit() and int(name[3:]) in allowed:
                idle += int(fields[4]) + int(fields[5])
        return time.monotonic(), idle / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None


_since: Snapshot = snapshot()


def idle_cores() -> float | None:
    """Cores that sat idle on average since the import or the previous call; None when the
    window is too short or too old to tell (then ask other_runnable)."""
    global _since
    now = snapshot()
    before, _since = _since, now
    if before is None or now is None:
        return None
    elapsed = now[0] - before[0]
    if not MIN_WINDOW <= elapsed <= MAX_WINDOW:
        return None
    return max(0.0, (now[1] - before[1]) / elapsed)


def other_runnable() -> float:
    """Tasks that compete for the cores, besides this one: the larger of the 1-minute load
    average and the number running at this instant (the running count of /proc/loadavg,
    less this process), so that a burst of other work counts before the average sees it."""
    average = os.getloadavg()[0]
    try:
        with open(LOADAVG, encoding="ascii") as f:
            running = int(f.read().split()[3].split("/")[0])
    except (OSError, ValueError, IndexError):
        return average
    return max(average, running - 1)


def spare_cores() -> int:
    """Cores a second (third, ...) gate process would have to itself: each measured idle
    three quarters of the time or more, or else not claimed by the load."""
    cores = len(os.sched_getaffinity(0))
    idle = idle_cores()
    spare = int(idle + 0.25) if idle is not None else int(cores - 1 - other_runnable() + 0.5)
    return max(0, min(cores - 1, spare))
