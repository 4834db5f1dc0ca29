"""The computations under way in this process: one :class:`Flight` per storage, namespace and key.

:mod:`regions.engine` decides who leads a flight and who waits for it; this module only holds them.
A forked child starts with none: the flights it inherits belong to threads of the parent, which do
not exist in the child (waiting for one would cost every miss of its key ``lock_timeout``).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import threading
from collections.abc import Hashable
from typing import Any


class Flight:
    """One computation of one key in this process, and the callers waiting for it."""

    __slots__ = ("future", "task", "waiters", "io_since")

    def __init__(self) -> None:
        self.future: concurrent.futures.Future[Any] = concurrent.futures.Future()
        self.task: asyncio.Task[None] | None = None
        self.waiters = 0
        #: When (``time.monotonic()``) its leader began the backend call it is making, ``None``
        #: while it makes none (it computes, or decides)
        self.io_since: float | None = None


def orphaned(flight: Flight) -> bool:
    """A flight whose coroutine leader can never finish: its event loop was closed under it."""
    task = flight.task
    return task is not None and not task.done() and task.get_loop().is_closed()


class Flights:
    """The flights under way in this process, keyed by storage, namespace and key: two regions
    (or two managers) on the same storage share them."""

    def __init__(self) -> None:
        self.table: dict[Hashable, Flight] = {}
        self.lock = threading.Lock()
        #: Flights finished so far: a leader whose read predates a finished flight reads again.
        self.completed = 0

    def join(self, token: Hashable, stale_ok: bool) -> tuple[Flight | None, bool]:
        """``(flight, leads)``; ``(None, False)``: serve the stale value, a flight is under way."""
        with self.lock:
            flight = self.table.get(token)
            if flight is None or flight.future.done() or orphaned(flight):
                flight = self.table[token] = Flight()
                flight.waiters = 1
                return flight, True
            if stale_ok:
                return None, False
            flight.waiters += 1
            return flight, False

    def leave(self, flight: Flight) -> int:
        """One caller less waits for ``flight``; how many are left."""
        with self.lock:
            flight.waiters -= 1
            return flight.waiters

    def land(self, token: Hashable, flight: Flight) -> None:
        """``flight`` has its outcome: count it and take it off the table."""
        with self.lock:
            self.completed += 1
            if self.table.get(token) is flight:
                del self.table[token]

    def after_fork(self) -> None:
        """In a forked child: forget the parent's flights (their leaders are threads of the parent;
        one may also have held the lock of the table)."""
        self.table = {}
        self.lock = threading.Lock()


FLIGHTS = Flights()
os.register_at_fork(after_in_child=FLIGHTS.after_fork)
