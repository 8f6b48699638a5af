"""Rate limiting as GCRA, as the compiled program and the oracle both compute it."""

from __future__ import annotations

from dataclasses import dataclass, field

from fwc.compiler.policy.ir import Family, Rule

NS_PER_S = 1_000_000_000


@dataclass(frozen=True)
class Gcra:
    """A token bucket of `burst` tokens refilled at `pps` per second, in nanoseconds.

    `interval` is the time one token takes to come back, 1e9 // pps: the
    effective rate 1e9 / interval is pps or a little more (at most 0.1% more up
    to 10^6 pps; from 5 * 10^8 pps on, interval is 1 ns and the rate 10^9).
    `tolerance` is how far ahead of now the bucket's theoretical arrival time
    may run, (burst - 1) * interval. With pps <= 10^9 and burst < 2**32 it is
    below 4.3e18, so now + tolerance + interval fits a u64 for centuries of uptime.
    """

    interval: int
    tolerance: int


def gcra(rule: Rule) -> Gcra | None:
    """The GCRA parameters of a rate_limit rule, None for any other rule."""
    if rule.rate_limit_pps is None:
        return None
    interval = max(1, NS_PER_S // rule.rate_limit_pps)
    burst = rule.rate_limit_burst if rule.rate_limit_burst is not None else rule.rate_limit_pps
    return Gcra(interval, (burst - 1) * interval)


BucketKey = tuple[int, Family, int]  # rule id, source family, source address


@dataclass
class RateLimiter:
    """Every (rule, source) bucket: its theoretical arrival time in ns, as the program keeps it.

    Unlike the program's LRU map it never forgets a bucket, so it models a map
    large enough for every source it sees.
    """

    tat: dict[BucketKey, int] = field(default_factory=dict)

    def take(self, key: BucketKey, params: Gcra, now_ns: int) -> bool:
        """True when a packet at `now_ns` takes a token (and spends it), False when none is left."""
        tat = max(self.tat.get(key, now_ns), now_ns)
        if tat - now_ns > params.tolerance:
            return False
        self.tat[key] = tat + params.interval
        return True
