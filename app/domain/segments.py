"""Parallel-scan planning and read-capacity pacing (pure: time is passed in)."""

from __future__ import annotations

import math

SEGMENT_BYTES = 64 * 1024 * 1024
AUTO_MAX_SEGMENTS = 1000
MAX_SEGMENTS = 1_000_000  # DynamoDB's TotalSegments limit
MANY_ITEMS = 10_000
MANY_ITEMS_MIN_SEGMENTS = 4


def plan_segments(size_bytes: int, item_count: int, configured: int) -> int:
    """Number of parallel Scan segments for a table.

    ``configured > 0`` wins (capped at DynamoDB's 1,000,000).  Otherwise (auto) one segment
    per started 64 MiB of ``TableSizeBytes``, between 1 and 1000, but at least 4 when the
    table holds more than 10,000 items.  Size and count are DescribeTable's ~6-hourly
    estimates, hence the item-count floor for young, fast-growing tables.
    """
    if configured < 0:
        raise ValueError(f"configured segments must be >= 0, got {configured}")
    if configured:
        return min(configured, MAX_SEGMENTS)
    total = max(1, min(AUTO_MAX_SEGMENTS, math.ceil(max(size_bytes, 0) / SEGMENT_BYTES)))
    return max(total, MANY_ITEMS_MIN_SEGMENTS) if item_count > MANY_ITEMS else total


def segment_ids(total: int) -> list[int]:
    """The ``Segment`` numbers of a ``TotalSegments=total`` scan."""
    if not 1 <= total <= MAX_SEGMENTS:
        raise ValueError(f"total segments must be 1..{MAX_SEGMENTS}, got {total}")
    return list(range(total))


def rcu_budget(read_capacity: int, percent: float, max_rcu: float) -> float | None:
    """Read units per second the whole snapshot of one table may use.

    Provisioned table (``read_capacity > 0``): ``percent`` of it.  On-demand (0): ``max_rcu``
    when > 0, else None, meaning unlimited.
    """
    if read_capacity > 0:
        return read_capacity * percent / 100
    return max_rcu if max_rcu > 0 else None


class TokenBucket:
    """Debt-based pacer: pay after the call, then wait off any debt.

    Call :meth:`delay_for` after each request with its ConsumedCapacity; sleep for the
    returned seconds before the next request.  The bucket refills at ``rate_per_s`` up to
    ``burst`` tokens (it starts full) and may go negative, so over any run the consumption
    is at most ``burst + rate * elapsed``.  ``rate_per_s=None`` never delays.
    """

    __slots__ = ("burst", "last", "rate", "tokens")

    def __init__(self, rate_per_s: float | None, burst: float, now: float) -> None:
        if rate_per_s is not None and not rate_per_s > 0:
            raise ValueError(f"rate must be > 0 or None, got {rate_per_s}")
        if not burst >= 0:
            raise ValueError(f"burst must be >= 0, got {burst}")
        self.rate = rate_per_s
        self.burst = burst
        self.tokens = burst
        self.last = now

    def delay_for(self, cost: float, now: float) -> float:
        if cost < 0:
            raise ValueError(f"cost must be >= 0, got {cost}")
        if self.rate is None:
            return 0.0
        elapsed = max(0.0, now - self.last)  # tolerate a clock that steps back
        self.last = max(self.last, now)
        self.tokens = min(self.burst, self.tokens + elapsed * self.rate) - cost
        return 0.0 if self.tokens >= 0 else -self.tokens / self.rate
