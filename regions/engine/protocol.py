"""Compute-once, written once and without I/O: the steps of one call whose read missed.

:class:`Call` decides who computes a missing value and what every other caller does meanwhile. Its
steps that need the backend or the function are generators that *yield* the operation they need
and receive its result, as h11 and hyper-h2 keep a protocol apart from its I/O:

``(READ,)``              read the entry again: reply ``(entry, fresh)``
``(LOCK,)``              the backend's cross-process lock of the key: reply a lock or ``None``
``(ACQUIRE, deadline)``  take that lock, waiting until ``deadline`` (``0``: try once): reply
                         ``True`` (held), ``False`` (another holder kept it), ``None`` (it failed)
``(LEASE,)``             the backend's lease of the key, taken before computing: reply a lease
                         or ``None`` (no lease: the store is a plain write)
``(COMPUTE,)``           call the function: reply its value
``(STORE, value, lease)`` store ``value`` under the key with that lease: reply whether it was stored

:mod:`regions.engine.sync` performs them in the calling thread, :mod:`regions.engine.aio` on the
event loop and the store's I/O threads. Joining, leading and waiting for in-process flights
(:mod:`regions.engine.flights`) are decided here too (:meth:`Call.join`); only how a caller waits
for a flight differs between threads and coroutines.
"""

from __future__ import annotations

import time
from collections.abc import Generator, Hashable
from typing import TYPE_CHECKING, Any

from .. import trace as _trace
from ..backends.contract import Entries, Entry, SharedLock, is_servable
from .flights import FLIGHTS, Flight

if TYPE_CHECKING:
    from ..region import Region

READ, LOCK, ACQUIRE, LEASE, COMPUTE, STORE = range(6)
Op = tuple[Any, ...]
Steps = Generator[Op, Any, Any]

_READ: Op = (READ,)
_LOCK: Op = (LOCK,)
_LEASE: Op = (LEASE,)
_COMPUTE: Op = (COMPUTE,)
_monotonic = time.monotonic


class Call:
    """One caller's get-or-create of ``key`` in ``ns``, after a read at flight count ``seq`` found
    ``entry`` missing or expired."""

    __slots__ = (
        "region", "ns", "key", "ttl", "entry", "seq", "token", "deadline", "shared", "held", "flight"
    )

    def __init__(
        self, region: Region, storage: Hashable, ns: Entries, key: Hashable, entry: Entry | None, seq: int,
        ttl: float | None,
    ) -> None:
        self.region, self.ns, self.key, self.ttl = region, ns, key, ttl
        self.entry, self.seq = entry, seq
        #: The flight of this key: one per storage, namespace and key in the process.
        self.token: Hashable = (storage, ns.namespace, ns.storage_token(), key)
        self.deadline = _monotonic() + region.lock_timeout
        #: The cross-process lock, and whether this call holds it (the runner releases it).
        self.shared: SharedLock | None = None
        self.held = False
        #: The flight this call leads, if it leads one (its runner marks the flight's backend calls).
        self.flight: Flight | None = None

    # decisions without I/O --------------------------------------------------------------------
    def servable(self) -> bool:
        entry = self.entry
        return entry is not None and is_servable(entry, time.time(), self.region.stale)

    def join(self) -> tuple[Flight | None, bool]:
        """``(flight, leads)``: lead it, or wait for it; ``(None, False)``: serve the stale value."""
        flight, leads = FLIGHTS.join(self.token, self.servable())
        if leads:
            self.flight = flight
        return flight, leads

    def worth_waiting(self, flight: Flight) -> bool:
        """Whether to wait for ``flight`` rather than compute now: not when its leader is blocked
        on a backend call begun before the key's server was marked down (that call ends only at
        its socket timeout, and nothing is cached meanwhile); a call begun after is skipped at
        once. A leader that computes is always worth waiting for: that is what compute-once saves.
        """
        since = flight.io_since
        if since is None:
            return True
        down = self.ns.down_since(self.key)
        return down is None or since > down

    def left(self) -> float:
        """Seconds left before ``lock_timeout`` runs out for this call."""
        return max(0.0, self.deadline - _monotonic())

    def stale(self) -> Any:
        """Serve the expired entry (another caller computes meanwhile)."""
        counts = self.region.counts
        counts.hits += 1
        counts.stale += 1
        if _trace.ON:
            _trace.stale()
        return self.entry[2]  # type: ignore[index]

    def joined(self) -> None:
        """The value came from another caller's computation: a hit for this one."""
        self.region.counts.hits += 1

    def timed_out(self) -> None:
        """Waited ``lock_timeout`` for another caller: this one computes by itself."""
        self.region.counts.lock_timeouts += 1

    # steps that need I/O -----------------------------------------------------------------------
    def lead(self) -> Steps:
        """The leader of a flight: re-read, take the shared lock, re-read, compute, store; returns
        the value for every caller of the flight."""
        if FLIGHTS.completed != self.seq or self.region.store.native_keys:
            entry, fresh = yield _READ  # stored by a flight that ended after our read?
            if fresh:
                return entry[2]
            self.entry = entry
        shared = yield _LOCK
        if shared is not None:
            self.shared = shared
            if self.servable():
                self.held = bool((yield (ACQUIRE, 0)))
                if not self.held:  # another process computes: serve the expired value meanwhile
                    return self.stale()
            else:
                got = yield (ACQUIRE, self.deadline)
                if got is False:
                    self.timed_out()
                self.held = bool(got)
            entry, fresh = yield _READ  # another process may have stored it meanwhile
            if fresh:
                return entry[2]
        return (yield from self.compute())

    def compute(self) -> Steps:
        """Compute, and store unless an invalidation since the start may have made it obsolete: one
        noted in this process (:mod:`.marks`), or a delete of the key in any process since the lease
        was taken (the backend refuses the store)."""
        region = self.region
        region.counts.misses += 1
        marks = region.marks
        mark = marks.mark(self.ns.namespace, self.key)
        lease = yield _LEASE  # before the function reads its data: a later delete voids it
        value = yield _COMPUTE
        if not marks.changed(mark):
            yield (STORE, value, lease)
        return value
