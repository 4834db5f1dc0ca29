"""Push: invalidations applied the moment they are logged, where the log storage can wait for them.

A :class:`~regions.backends.contract.LogStorage` that offers ``wait(after, timeout)`` (Redis: ``XREAD
BLOCK`` on the log's stream) lets a process block until a record after its position exists. A
:class:`Waker` is one daemon thread per log per process doing just that: on news it makes its
:class:`~regions.sync.local.LocalSync` look at once, through the same reader as every other look
(gaps and unreadable records reset the local tier; nothing is guessed from what the wait saw).

* Polling stays: the looks every ``sync_interval`` on the calls still run, and carry the
  invalidations while the waker cannot wait (server down, link lost). The waker only makes a look
  come sooner; it never skips one.
* Nothing is lost while it is down: when a wait works again (and when the waker starts) it makes
  a look at once, and then waits after the reader's position, so a record appended meanwhile
  wakes it at once (a stream keeps its records; a record trimmed away, or a server restarted
  empty, is a gap: a reset of the local tier).
* A failed wait is retried after a back-off doubling from :data:`BACKOFF_FIRST` to
  :data:`BACKOFF_MOST` seconds; a problem is logged through :class:`~regions.throttle.Throttle`
  (a storage that is down says so itself, once per outage).
* Fork-safe: a waker belongs to the process that started it; a forked child starts its own on its
  next look (the storage gives each process a connection of its own).
* :meth:`Waker.stop` (the store closes): the thread ends after its current wait, at most
  :data:`WAIT` seconds later; it holds its :class:`LocalSync` weakly, so an unclosed region that is
  dropped ends it too.
"""

from __future__ import annotations

import os
import threading
import weakref
from typing import TYPE_CHECKING, Any

from ..errors import BackendUnavailable
from ..throttle import LOG_EVERY, Throttle

if TYPE_CHECKING:
    from .local import LocalSync

#: Seconds one wait blocks at most (the storage slices it further to stay within its socket timeout).
WAIT = 1.0
#: Seconds before the first retry of a failed wait; doubled up to :data:`BACKOFF_MOST`.
BACKOFF_FIRST = 0.05
BACKOFF_MOST = 2.0


def can_wait(storage: Any) -> bool:
    """Whether ``storage`` offers the optional ``wait`` of the log storage contract."""
    return callable(getattr(storage, "wait", None))


class Waker:
    """The thread that waits on ``sync``'s log and makes it look when a record arrives."""

    def __init__(self, sync: LocalSync) -> None:
        self.pid = os.getpid()
        self._sync = weakref.ref(sync)
        self._stopped = threading.Event()
        #: The last wait succeeded: pushes arrive (``False`` while it fails: polling alone).
        self.up = False
        #: Looks a record woke; failed waits.
        self.wakes = 0
        self.failures = 0
        self._throttle = Throttle(f"cache region {sync.region!r}: ", LOG_EVERY)
        self.thread = threading.Thread(target=self._run, name=f"regions-push {sync.region}", daemon=True)

    def start(self) -> Waker:
        self.thread.start()
        return self

    def stop(self) -> None:
        """End the thread after its current wait (not waited for)."""
        self._stopped.set()

    @property
    def stopped(self) -> bool:
        return self._stopped.is_set()

    def _run(self) -> None:
        delay = 0.0
        storage: Any = None
        try:
            while not self._stopped.is_set():
                sync = self._sync()
                if sync is None or sync.log is None:
                    return
                log, storage = sync.log, sync.log.storage
                seen = log.seen
                if seen is None:  # no position yet: the first look gives one (a reset of nothing)
                    sync.look()
                    if log.seen is None:
                        delay = self._failed(None, delay)
                    continue
                del sync  # held weakly while waiting: a dropped region ends the thread
                was_up = self.up
                try:  # not up yet (started, or failed): a short wait, then a look (below)
                    news = storage.wait(seen, WAIT if was_up else 0.001)
                except Exception as exc:
                    if self._stopped.is_set():
                        return
                    self.up = False
                    delay = self._failed(exc, delay)
                    continue
                delay, self.up = 0.0, True
                sync = self._sync()
                if sync is None or self._stopped.is_set() or (was_up and not news):
                    continue
                # news; or the wait works again: a look finds what came meanwhile, or a server
                # restarted empty (its counter went back: a reset), without waiting for a record
                self.wakes += bool(news)
                sync.look()
                if news and log.seen == seen:  # news, yet the look did not move on (it failed, or a
                    self._stopped.wait(min(sync.interval, BACKOFF_MOST))  # counter is behind): no busy loop
        finally:
            self.up = False
            close = getattr(storage, "close_waiting", None)
            if close is not None:
                try:
                    close()
                except Exception:
                    pass

    def _failed(self, exc: BaseException | None, delay: float) -> float:
        """Count and (throttled) log a failed wait, sleep the back-off; the next back-off."""
        self.failures += 1
        said = isinstance(exc, BackendUnavailable) or getattr(exc, "regions_logged", False)
        if exc is not None and not said:  # a storage marked down said so itself, once
            self._throttle.warning(
                "waiting for invalidations failed (%s: %s); they arrive by polling until the wait "
                "works again", type(exc).__name__, exc,
            )
        delay = min(BACKOFF_MOST, max(BACKOFF_FIRST, delay * 2))
        self._stopped.wait(delay)
        return delay


def started(waker: Waker | None, sync: LocalSync) -> Waker:
    """``waker`` if it is this process's and running, else a new one started for ``sync``."""
    if waker is not None and waker.pid == os.getpid() and not waker.stopped and waker.thread.is_alive():
        return waker
    return Waker(sync).start()

