"""A process's side of an invalidation log: when to look, what to do with what was found.

:class:`LocalSync` belongs to one store with process-local entries (a synced ``memory`` region,
a ``tiered`` region's local tier). At most once per ``interval`` one caller looks at the log (on
an event loop's thread, on a thread of its own); while the log cannot be read the store is
"degraded" and serves only entries younger than ``interval``. :func:`note_changes` tells the
region what a look found (so that a computation under way does not store over it), then
:func:`apply_changes` applies it to the store's entries. The counters feed the region's ``stats()``.
"""

from __future__ import annotations

import asyncio
import math
import os
import threading
import time
from collections.abc import Callable, Hashable
from typing import TYPE_CHECKING, Any, Protocol

from ..errors import BackendUnavailable, ConfigurationError
from ..throttle import LOG_EVERY, Throttle
from .log import SyncLog
from .push import Waker, can_wait, started
from .records import Record

if TYPE_CHECKING:
    from ..backends.contract import Entry, Store
    from ..backends.memory import MemoryStore

_monotonic = time.monotonic


class Note(Protocol):
    """What a store calls for each invalidation applied from the log (the region's
    :meth:`~regions.engine.marks.InvalidationMarks.note`): ``key`` of ``namespace``; all of
    ``namespace`` (``key`` ``None``); all of the region (no argument)."""

    def __call__(self, namespace: str | None = None, key: Hashable = None) -> None: ...


class LocalSync:
    """One store's link to its log: when to look, what was found, the counters for ``stats()``.

    A hit path reads :attr:`due` (``time.monotonic()`` time) and :attr:`degraded` itself and calls
    :meth:`check` / :meth:`trusted` only when they say so."""

    def __init__(
        self,
        region: str,
        identity: str,
        interval: float,
        apply: Callable[[list[Record] | None], None],
        push: bool = True,
    ) -> None:
        self.region = region
        #: Names the log on the shared storage: the same in every process with these settings.
        self.identity = identity
        self.interval = interval
        self.apply = apply
        self.log: SyncLog | None = None
        self.shared: Store | None = None
        #: Monotonic time of the next look at the log (every read compares it with the clock).
        self.due = -math.inf
        #: The last look failed: serve only entries younger than ``interval``.
        self.degraded = False
        self.synced_at = -math.inf
        self.counts = {"own_clears": 0, "received_clears": 0, "received_invalidations": 0, "resets": 0,
                       "sync_failures": 0}
        #: Wait on the log for news (:mod:`regions.sync.push`) where its storage can: OPTIONS ``push``.
        self.push = push
        self._pushes = False
        self._waker: Waker | None = None
        self._closed = False
        #: Times changes were applied: a reader of the shared tier compares it before and after.
        self.applied = 0
        self._lock = threading.Lock()
        self._looking = threading.Lock()
        self._throttle = Throttle(f"cache region {region!r}: ", LOG_EVERY)

    def attach(self, shared: Store) -> None:
        """Keep the log on ``shared``'s storage (a memcached or file store)."""
        storage = shared.sync_storage(self.identity)
        if storage is None:
            raise ConfigurationError(
                f"region {self.region!r}: {shared.region!r} ({shared.name}) cannot hold an invalidation "
                "log; name a memcached or file region (or one whose store implements sync_storage)",
                region=self.region,
            )
        self.shared = shared
        self.log = SyncLog(storage)
        self._pushes = self.push and can_wait(storage)

    @property
    def pushes(self) -> bool:
        """Whether invalidations are pushed here (the log's storage can wait, and ``push`` is on)."""
        return self._pushes

    def check(self) -> None:
        """Look at the log if it is time (one caller at a time; the others go on meanwhile).

        On an event loop's thread the look runs on a thread of its own: the loop never waits for
        the network (a hung server would stall every coroutine for ``timeout``)."""
        if self.log is None or not self._lock.acquire(blocking=False):
            return
        try:
            now = _monotonic()
            if now < self.due:
                return
            self.due = now + self.interval
            if self._pushes and not self._closed:  # this process's waker, started lazily
                self._waker = started(self._waker, self)
            try:
                asyncio.get_running_loop()
            except RuntimeError:
                self._look(now)
            else:
                threading.Thread(target=self._look, args=(now,), name=f"regions-sync {self.region}",
                                 daemon=True).start()
        finally:
            self._lock.release()

    def look(self) -> None:
        """Look at the log now (a push said there is news), whatever :attr:`due` says."""
        self._look(_monotonic())

    def _look(self, now: float) -> None:
        assert self.log is not None
        with self._looking:  # one look at a time (a thread's may still run when the next is due)
            first = self.log.seen is None
            try:
                changes = self.log.changes()
            except Exception as exc:
                self.counts["sync_failures"] += 1
                self.degraded = True
                if not isinstance(exc, BackendUnavailable) and not getattr(exc, "regions_logged", False):
                    self._throttle.warning(
                        "reading the invalidation log failed (%s: %s); serving only entries younger "
                        "than %g s until it can be read", type(exc).__name__, exc, self.interval,
                    )
                return
            self.degraded = False
            self.synced_at = now
            if changes is None and not first:
                self.counts["resets"] += 1
            if changes != []:
                self.apply(changes)

    def publish(
        self, op: str, namespace: str | None = None, key: Hashable = None, tags: list[str] | None = None
    ) -> None:
        """Append one invalidation for the other processes (raises when the log is unreachable)."""
        if self.log is not None:
            self.log.publish(op, namespace, key, tags)

    def trusted(self, entry: Entry) -> bool:
        """While the log cannot be read: only entries stored less than ``interval`` seconds ago."""
        return not self.degraded or entry[0] > time.time() - self.interval

    def close(self) -> None:
        """The store closes: its waker (if any) ends after its current wait."""
        self._closed = True
        waker, self._waker = self._waker, None
        if waker is not None and waker.pid == os.getpid():
            waker.stop()

    def after_fork(self) -> None:
        """A forked child may have copied the lock held by a parent's thread: a new one. The
        parent's waker is not the child's: the child starts its own at its next look."""
        self._lock = threading.Lock()
        self._looking = threading.Lock()
        self._waker = None
        if self._pushes:  # the child's first call looks, and starts its waker
            self.due = -math.inf
        if self.log is not None:
            self.log.after_fork()

    def stats(self) -> dict[str, Any]:
        """The counters; with push, ``pushed`` (looks a record woke), ``push_failures`` (failed
        waits) and ``push_up`` (whether the last wait worked)."""
        out = {**self.counts, "synced_ago": _monotonic() - self.synced_at if self.synced_at > 0 else None}
        if self._pushes:
            waker = self._waker
            mine = waker is not None and waker.pid == os.getpid()
            out["pushed"] = waker.wakes if waker is not None and mine else 0
            out["push_failures"] = waker.failures if waker is not None and mine else 0
            out["push_up"] = bool(mine and waker is not None and waker.up)
        return out


def note_changes(note: Note | None, changes: list[Record] | None) -> None:
    """Tell ``note`` what each record of ``changes`` invalidates, before it is applied (a computation
    that checks its mark afterwards then does not store over it): a key, a namespace, the region
    (``clear``, or ``None``: the log was reset). A ``tags`` record needs no note: an entry a
    computation under way stores carries the tag versions read before it, which the bump made old
    (:class:`~regions.tags.view.TaggedView`)."""
    if note is None:
        return
    if changes is None:
        note()
        return
    for rec in changes:
        if rec.op == "clear":
            note()
        elif rec.op == "namespace":
            note(rec.namespace)
        elif rec.op == "key":
            note(rec.namespace, rec.key)


def apply_changes(
    local: MemoryStore, sync: LocalSync, changes: list[Record] | None, tags: Callable[[list[str]], None]
) -> None:
    """Apply what :meth:`SyncLog.changes` found to the process-local entries of ``local``;
    ``tags(names)`` makes this process's versions of those tags new."""
    with local.lock:
        if changes is None:
            local.remove_all()
            return
        for rec in changes:
            if rec.op == "clear":
                local.remove_all()
                sync.counts["received_clears"] += 1
                continue
            sync.counts["received_invalidations"] += 1
            if rec.op == "key":
                local.remove_key(str(rec.namespace), rec.key)
            elif rec.op == "namespace":
                local.remove_namespace(str(rec.namespace))
            elif rec.op == "tags":
                tags(rec.tags)
    sync.applied += 1
