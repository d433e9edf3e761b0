"""How long database calls take, kept as plain bucket counts on the hot path (no lock, no
metrics library); server/metrics.py turns them into chat_db_call_duration_seconds at scrape
time."""

from __future__ import annotations

from bisect import bisect_left

# Upper bounds (seconds) of the call latency buckets: from a SQLite read (~0.1 ms) to the
# longest DB_TIMEOUT worth telling apart.
CALL_BUCKETS = (
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
    2.5, 5.0, 10.0,
)  # fmt: skip


class CallTimes:
    """How long one kind of database call took: counts per bucket (the last is past every
    bound) and their sum."""

    __slots__ = ("bounds", "counts", "sum")

    def __init__(self, bounds: tuple[float, ...] = CALL_BUCKETS) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)
        self.sum = 0.0

    def observe(self, seconds: float) -> None:
        self.counts[bisect_left(self.bounds, seconds)] += 1
        self.sum += seconds

    @property
    def count(self) -> int:
        return sum(self.counts)
