"""Whether a server answers: a circuit breaker per server.

A server is *up* until a call to it fails on the network (a timeout, a refused or reset connection,
an ``ERROR`` reply). It is then *down*: callers skip it at once, with no network wait, and use the
function's own result. A background thread probes it every ``retry_interval`` seconds; when it
answers, the invalidations that could not reach it are replayed in order, and only then is it up
again, so no read is served before the invalidations made during the outage are in force.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Hashable
from typing import Any

from .throttle import Throttle

#: Invalidations kept for replay per server; past that, ``overflow`` replaces them all.
MAX_PENDING = 10_000


class Breaker:
    """Health of one server (see the module docstring).

    ``probe()`` raises unless the server answers. ``overflow()`` is the action that stands for every
    pending invalidation when more than :data:`MAX_PENDING` pile up (a region-wide clear).
    ``on_down()`` runs when the server is marked down (drop connections that may be stuck or dead).
    """

    def __init__(
        self,
        name: str,
        probe: Callable[[], Any],
        retry_interval: float,
        overflow: Callable[[], Any] | None = None,
        on_down: Callable[[], Any] | None = None,
    ) -> None:
        self.name = name
        self.probe = probe
        self.on_down = on_down
        self.retry_interval = retry_interval
        self.overflow = overflow
        #: Read on every call: a plain attribute.
        self.down = False
        self.down_since = 0.0
        self.outages = 0
        self.pending: dict[Hashable, Callable[[], Any]] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._down_log = Throttle("")
        self._up_log = Throttle("")  # its own: the line saying it is back is never swallowed

    def trip(self, exc: BaseException) -> None:
        """Mark the server down after ``exc`` (no-op when it already is) and start probing it."""
        with self._lock:
            if self.down or self._stop.is_set():
                return
            self.down = True
            self.down_since = time.monotonic()
            self.outages += 1
            thread = self._thread = threading.Thread(
                target=self._probe_until_up, name=f"regions-probe {self.name}", daemon=True
            )
        try:
            exc.regions_logged = True  # type: ignore[attr-defined]  # the region need not say it again
        except AttributeError:
            pass
        self._down_log.warning(
            "%s is down (%s: %s); its keys are not cached until it answers (probing every %g s)",
            self.name, type(exc).__name__, exc, self.retry_interval,
        )
        if self.on_down is not None:
            try:
                self.on_down()
            except Exception:
                pass
        thread.start()

    def defer(self, key: Hashable, action: Callable[[], Any]) -> None:
        """Replay ``action`` (an invalidation that did not reach the server) before it is up again."""
        with self._lock:
            if len(self.pending) >= MAX_PENDING and self.overflow is not None:
                self.pending = {"overflow": self.overflow}
                return
            self.pending.pop(key, None)  # re-inserted last: replays keep the order of the calls
            self.pending[key] = action

    def _probe_until_up(self) -> None:
        while not self._stop.wait(self.retry_interval):
            try:
                self.probe()
                replayed = self._replay()
            except Exception:
                continue
            with self._lock:
                if self.pending:  # deferred while we replayed: next round
                    continue
                self.down = False
                self._thread = None
            self._up_log.warning(  # throttled too: a flapping server logs two lines per 10 s
                "%s answers again after %.1f s%s", self.name, time.monotonic() - self.down_since,
                f"; {replayed} invalidation(s) made meanwhile replayed" if replayed else "",
            )
            return

    def _replay(self) -> int:
        done = 0
        while True:
            with self._lock:
                if not self.pending:
                    return done
                key = next(iter(self.pending))
                action = self.pending[key]
            action()  # raises while the server fails: kept, and tried again next round
            with self._lock:
                if self.pending.get(key) is action:
                    del self.pending[key]
            done += 1

    def close(self) -> None:
        self._stop.set()

    def state(self) -> dict[str, Any]:
        """``{"down": bool, "down_for": seconds or None, "outages": n, "pending": n}``."""
        return {
            "down": self.down,
            "down_for": time.monotonic() - self.down_since if self.down else None,
            "outages": self.outages,
            "pending": len(self.pending),
        }
