"""Compile options that shape the artifact's maps: rate-limit buckets and the log rate."""

from __future__ import annotations

from dataclasses import dataclass

DEFAULT_RATE_LIMIT_BUCKETS = 65_536
DEFAULT_LOG_RATE = 100
# The ring buffer of verdict events: a power of two of pages; 256 KiB holds about
# 4,600 events of 56 bytes (plus 8 bytes of ring header each).
EVENTS_SIZE = 256 * 1024


@dataclass(frozen=True)
class CompileOptions:
    """`rate_limit_buckets`: entries of the LRU map of rate-limit buckets (shared by all
    rate_limit rules); `log_rate`: events per second per CPU at most."""

    rate_limit_buckets: int = DEFAULT_RATE_LIMIT_BUCKETS
    log_rate: int = DEFAULT_LOG_RATE


DEFAULT_OPTIONS = CompileOptions()
