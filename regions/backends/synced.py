"""``memory`` with ``sync_with``: process-local entries whose invalidations reach every process.

The seed's LocalSyncCache, made whole: not only ``clear()`` but ``invalidate(args)``,
``invalidate_all()`` and tag invalidations travel, through the invalidation log
(:mod:`regions.sync`) kept on the ``sync_with`` region's memcached servers or folder. A hit
stays a dict lookup; at most once per ``sync_interval`` one caller reads the log (one round trip
when nothing changed). While the log cannot be read, only entries stored in the last
``sync_interval`` seconds are served (an invalidation made elsewhere meanwhile could not be seen).
"""

from __future__ import annotations

import asyncio
import logging
import math
import threading
import time
from collections.abc import Callable, Hashable, Mapping
from typing import Any

from ..errors import BackendUnavailable, ConfigurationError
from ..sync.log import Record, SyncLog, new_origin
from ..tags.versions import LocalVersions
from ..throttle import LOG_EVERY, Throttle
from .contract import Entry, Store
from .memory import MemoryNamespaceManager, MemoryStore

log = logging.getLogger("regions")
_monotonic = time.monotonic


class LocalSync:
    """One store's link to its log: when to look, what was found, the counters for ``stats()``."""

    def __init__(
        self, region: str, identity: str, interval: float, apply: Callable[[list[Record] | None], None]
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
        #: Times changes were applied: a reader of the shared tier compares it before and after.
        self.applied = 0
        self._lock = threading.Lock()
        self._looking = threading.Lock()
        self._throttle = Throttle(f"cache region {region!r}: ", LOG_EVERY)

    def attach(self, shared: Store) -> None:
        storage = shared.sync_storage(self.identity)
        if storage is None:
            raise ConfigurationError(
                f"region {self.region!r}: {shared.region!r} ({shared.name}) cannot hold an invalidation "
                "log; name a memcached or file region",
                region=self.region,
            )
        self.shared = shared
        self.log = SyncLog(storage)

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
            try:
                asyncio.get_running_loop()
            except RuntimeError:
                self._look(now)
            else:
                threading.Thread(target=self._look, args=(now,), name=f"regions-sync {self.region}",
                                 daemon=True).start()
        finally:
            self._lock.release()

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

    def after_fork(self) -> None:
        """A forked child may have copied the lock held by a parent's thread: a new one."""
        self._lock = threading.Lock()
        self._looking = threading.Lock()
        if self.log is not None:
            self.log.origin = new_origin()

    def stats(self) -> dict[str, Any]:
        return {**self.counts, "synced_ago": _monotonic() - self.synced_at if self.synced_at > 0 else None}


def apply_changes(
    local: MemoryStore, sync: LocalSync, changes: list[Record] | None, tags: Callable[[list[str]], None]
) -> None:
    """Apply what :meth:`SyncLog.changes` found to the process-local entries of ``local``;
    ``tags(names)`` makes this process's versions of those tags new."""
    data = local.data
    with local.lock:
        if changes is None:
            data.clear()
            return
        for rec in changes:
            if rec.op == "clear":
                data.clear()
                sync.counts["received_clears"] += 1
                continue
            sync.counts["received_invalidations"] += 1
            if rec.op == "key":
                data.pop((str(rec.namespace), rec.key), None)
            elif rec.op == "namespace":
                for full in [k for k in data if k[0] == rec.namespace]:
                    del data[full]
            elif rec.op == "tags":
                tags(rec.tags)
    sync.applied += 1


class PublishedVersions:
    """Tag versions kept in this process whose bumps are published to every other process."""

    def __init__(self, local: LocalVersions, sync: LocalSync) -> None:
        self.local, self.sync = local, sync

    def read(self, names: list[str]) -> list[int | None]:
        return self.local.read(names)

    def create(self, names: list[str]) -> list[int]:
        return self.local.create(names)

    def bump(self, names: list[str]) -> None:
        """New versions here, then the same in every other process (through the log)."""
        self.local.bump(names)
        self.sync.publish("tags", tags=names)


class SyncedMemoryStore(MemoryStore):
    """A ``memory`` region with ``sync_with``: see the module docstring."""

    def __init__(self, region: str, location: Any, options: Any, **kwargs: Any) -> None:
        super().__init__(region, location, options, **kwargs)
        self.sync_with = str(self.options["sync_with"])
        interval = float(self.options.get("sync_interval", 1.0))
        self.sync = LocalSync(region, self.identity, interval, self._apply)
        self.local_tags = LocalVersions()
        self.tags = PublishedVersions(self.local_tags, self.sync)
        #: Called with no argument after invalidations from other processes were applied (the
        #: region bumps its count so that a computation under way does not store its result).
        self.on_remote: Callable[[], None] | None = None

    def link(self, stores: Mapping[str, Store]) -> None:
        self.sync.attach(stores[self.sync_with])

    @property
    def shared(self) -> Store | None:
        return self.sync.shared

    def namespace(self, namespace: str) -> SyncedMemoryNamespaceManager:
        return SyncedMemoryNamespaceManager(namespace, self)

    def clear(self) -> None:
        super().clear()
        self.sync.counts["own_clears"] += 1
        self.sync.publish("clear")

    def _apply(self, changes: list[Record] | None) -> None:
        apply_changes(self, self.sync, changes, self.local_tags.bump)
        if self.on_remote is not None:
            self.on_remote()

    def after_fork(self) -> None:
        super().after_fork()
        self.sync.after_fork()

    def extra_stats(self) -> dict[str, Any]:
        return self.sync.stats()


class SyncedMemoryNamespaceManager(MemoryNamespaceManager):
    store: SyncedMemoryStore

    def __init__(self, namespace: str, store: Any = None, **beaker_options: Any) -> None:
        super().__init__(namespace, store, **beaker_options)
        self._sync = self.store.sync

    def get_entry(self, key: Hashable) -> Entry | None:
        # every hit's path: the memory lookup written out here (a call to it cost a third more)
        sync = self._sync
        if _monotonic() >= sync.due:
            sync.check()
        full = (self.namespace, key)
        entry = self._data.get(full)
        if entry is None:
            return None
        try:
            self._data.move_to_end(full)
        except KeyError:  # evicted meanwhile
            pass
        if sync.degraded and not sync.trusted(entry):
            return None
        return entry

    def set_entry(self, key: Hashable, entry: Entry) -> None:
        sync = self.store.sync
        if _monotonic() >= sync.due:  # the first look comes before anything is stored
            sync.check()
        super().set_entry(key, entry)

    def delete_entry(self, key: Hashable) -> None:
        super().delete_entry(key)
        self.store.sync.publish("key", self.namespace, key)

    def do_remove(self) -> None:
        super().do_remove()
        self.store.sync.publish("namespace", self.namespace)
