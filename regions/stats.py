"""The counters of one region in one process, and the figures ``Region.stats()`` derives from them."""

from __future__ import annotations

from typing import Any


class Stats:
    """Counters of one region. Plain integers: exact in one thread, approximate under contention."""

    __slots__ = (
        "hits", "misses", "stale", "errors", "unavailable", "rejected", "sets", "lock_timeouts", "voided",
        "calls", "timed", "timed_time",
    )

    def __init__(self) -> None:
        self.hits = self.misses = self.stale = self.errors = self.rejected = self.sets = self.voided = 0
        self.unavailable = self.lock_timeouts = self.calls = self.timed = 0
        self.timed_time = 0.0

    def as_dict(self) -> dict[str, Any]:
        """``hits`` count values served without computing (``stale`` ones included); ``misses``
        count computations; ``errors`` backend calls that failed; ``unavailable`` backend calls
        skipped because the server was marked down; ``rejected`` malformed entries read as misses;
        ``lock_timeouts`` waits for another caller that reached ``lock_timeout``; ``voided``
        computed values the backend refused to store because their key was deleted (or written) in
        some process after their computation took its lease; ``mean_latency``
        and ``time_spent`` (its estimate over every backend call) come from every write and one read
        in :data:`regions.region.READ_SAMPLE` (timing each hit would cost a measurable share of it)."""
        looked_up = self.hits + self.misses
        mean = self.timed_time / self.timed if self.timed else None
        return {
            "hits": self.hits,
            "misses": self.misses,
            "stale": self.stale,
            "errors": self.errors,
            "unavailable": self.unavailable,
            "rejected": self.rejected,
            "lock_timeouts": self.lock_timeouts,
            "voided": self.voided,
            "sets": self.sets,
            "hit_rate": self.hits / looked_up if looked_up else None,
            "time_spent": mean * self.calls if mean is not None else 0.0,
            "mean_latency": mean,
        }


#: The raw counters of a region (:meth:`Region.counters`), in a stable order.
COUNTERS: tuple[str, ...] = Stats.__slots__
