"""Whether a server answers: a circuit breaker per server, shared by everything that uses it.

A server is *up* until a call to it fails on the network (a timeout, a refused or reset connection,
an ``ERROR`` reply). It is then *down*: callers skip it at once, with no network wait, and use the
function's own result. A background thread probes it every ``retry_interval`` seconds; when it
answers, the invalidations that could not reach it are replayed in order, and only then is it up
again, so no read is served before the invalidations made during the outage are in force.

One breaker stands for one server, whatever number of regions use it: the first failure marks it
down for all of them. Each user (a region's view of the server) keeps its own :class:`Backlog` of
invalidations, in its own order and with its own overflow action; the breaker replays every
backlog before the server is up again.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Hashable
from typing import Any

from .errors import describe
from .throttle import Throttle

#: Invalidations kept for replay per server; past that, ``overflow`` replaces them all.
MAX_PENDING = 10_000


class Backlog:
    """One user's invalidations that did not reach the server, replayed in the order they were
    made before the server is up again (:meth:`Breaker.backlog`). ``overflow()`` stands for all of
    them when more than :data:`MAX_PENDING` pile up (the user's region-wide clear)."""

    __slots__ = ("breaker", "overflow", "pending")

    def __init__(self, breaker: Breaker, overflow: Callable[[], Any] | None) -> None:
        self.breaker = breaker
        self.overflow = overflow
        self.pending: dict[Hashable, Callable[[], Any]] = {}

    def defer(self, key: Hashable, action: Callable[[], Any]) -> None:
        """Replay ``action`` (an invalidation that did not reach the server) before it is up again;
        a later action under the same ``key`` replaces it, and is replayed in its place in line."""
        self.breaker._defer(self, key, action)

    def drop(self) -> int:
        """Forget the pending invalidations (their user is closing); how many there were."""
        return self.breaker._drop(self)

    def __len__(self) -> int:
        return len(self.pending)


class Breaker:
    """Health of one server (see the module docstring).

    ``probe()`` raises unless the server answers. ``on_down()`` runs when the server is marked down
    (drop connections that may be stuck or dead). ``name`` (who uses the server, and its address)
    and ``retry_interval`` may change as users come and go.
    """

    def __init__(
        self,
        name: str,
        probe: Callable[[], Any],
        retry_interval: float,
        on_down: Callable[[], Any] | None = None,
    ) -> None:
        self.name = name
        self.probe = probe
        self.on_down = on_down
        self.retry_interval = retry_interval
        #: Read on every call: a plain attribute.
        self.down = False
        self.down_since = 0.0
        self.outages = 0
        #: What marked the server down the last time (``"TimeoutError: ..."``), for health reports.
        self.cause: str | None = None
        #: The backlogs holding invalidations, in the order they got their first (held strongly:
        #: replayed even if their user was dropped without closing).
        self._waiting: dict[int, Backlog] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._down_log = Throttle("")
        self._up_log = Throttle("")  # its own: the line saying it is back is never swallowed

    def backlog(self, overflow: Callable[[], Any] | None = None) -> Backlog:
        """A new user's backlog of invalidations (see :class:`Backlog`)."""
        return Backlog(self, overflow)

    @property
    def closed(self) -> bool:
        return self._stop.is_set()

    def trip(self, exc: BaseException) -> None:
        """Mark the server down after ``exc`` (no-op when it already is) and start probing it."""
        with self._lock:
            if self.down or self._stop.is_set():
                return
            self.down_since = time.monotonic()  # before ``down``: a reader of both sees this outage's
            self.down = True
            self.outages += 1
            self.cause = cause = describe(exc)
            thread = self._thread = threading.Thread(
                target=self._probe_until_up, name=f"regions-probe {self.name}", daemon=True
            )
        try:
            exc.regions_logged = True  # type: ignore[attr-defined]  # the region need not say it again
        except AttributeError:
            pass
        self._down_log.warning(
            "%s is down (%s); its keys are not cached until it answers (probing every %g s)",
            self.name, cause, self.retry_interval,
        )
        if self.on_down is not None:
            try:
                self.on_down()
            except Exception:
                pass
        thread.start()

    def _defer(self, backlog: Backlog, key: Hashable, action: Callable[[], Any]) -> None:
        with self._lock:
            self._waiting[id(backlog)] = backlog
            if len(backlog.pending) >= MAX_PENDING and backlog.overflow is not None:
                backlog.pending = {"overflow": backlog.overflow}
                return
            backlog.pending.pop(key, None)  # re-inserted last: replays keep the order of the calls
            backlog.pending[key] = action

    def _drop(self, backlog: Backlog) -> int:
        with self._lock:
            dropped = len(backlog.pending)
            backlog.pending = {}
            self._waiting.pop(id(backlog), None)
            return dropped

    def _probe_until_up(self) -> None:
        while not self._stop.wait(self.retry_interval):
            try:
                self.probe()
                replayed = self._replay()
            except Exception:
                continue
            with self._lock:
                if self.pending_count():  # deferred while we replayed: next round
                    continue
                self.down = False
                self._thread = None
            self._up_log.warning(  # throttled too: a flapping server logs two lines per 10 s
                "%s answers again after %.1f s%s", self.name, time.monotonic() - self.down_since,
                f"; {replayed} invalidation(s) made meanwhile replayed" if replayed else "",
            )
            return

    def _replay(self) -> int:
        """Every backlog's invalidations, each backlog in its own order; how many were replayed."""
        done = 0
        while True:
            with self._lock:
                for backlog in list(self._waiting.values()):
                    if backlog.pending:
                        key = next(iter(backlog.pending))
                        action = backlog.pending[key]
                        break
                    del self._waiting[id(backlog)]
                else:
                    return done
            action()  # raises while the server fails: kept, and tried again next round
            with self._lock:
                if backlog.pending.get(key) is action:
                    del backlog.pending[key]
            done += 1

    def pending_count(self) -> int:
        """Invalidations waiting for the server, of every backlog."""
        return sum(len(backlog.pending) for backlog in list(self._waiting.values()))

    def close(self) -> None:
        self._stop.set()

    def state(self) -> dict[str, Any]:
        """``{"down": bool, "down_for": seconds or None, "outages": n, "cause": the last outage's
        error or None, "pending": n}`` (of every backlog: a user reports its own)."""
        return {
            "down": self.down,
            "down_for": time.monotonic() - self.down_since if self.down else None,
            "outages": self.outages,
            "cause": self.cause,
            "pending": self.pending_count(),
        }
