"""``memory`` with ``sync_with``: process-local entries whose invalidations reach every process.

The seed's LocalSyncCache, made whole: not only ``clear()`` but ``invalidate(args)``,
``invalidate_all()`` and tag invalidations travel, through the invalidation log
(:mod:`regions.sync`) kept on the ``sync_with`` region's memcached servers or folder. A hit
stays a dict lookup; at most once per ``sync_interval`` one caller reads the log (one round trip
when nothing changed). While the log cannot be read, only entries stored in the last
``sync_interval`` seconds are served (an invalidation made elsewhere meanwhile could not be seen).
Over a redis region the log is also pushed (:mod:`regions.sync.push`; OPTIONS ``push``, on by
default): a thread waits on it and applies another process's invalidation within milliseconds; the
looks every ``sync_interval`` go on as the fallback.
"""

from __future__ import annotations

import time
from collections.abc import Hashable, Mapping
from typing import Any

from ..sync import LocalSync, Note, Record, apply_changes, note_changes
from ..tags.versions import LocalVersions
from .contract import Entry, Store
from .memory import ENTRY, TICK, USED, MemoryNamespaceManager, MemoryStore

_monotonic = time.monotonic  # a module global: the hit path's clock, compared with ``sync.due``


class PublishedVersions:
    """Tag versions kept in this process whose bumps are published to every other process."""

    def __init__(self, local: LocalVersions, sync: LocalSync) -> None:
        self.local, self.sync = local, sync
        #: the versions, read as they are by the decorator's inline tagged hit
        self.local_versions = local

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
        self.sync = LocalSync(region, self.identity, interval, self._apply,
                              push=bool(self.options.get("push", True)))
        self.local_tags = LocalVersions()
        self.tags = PublishedVersions(self.local_tags, self.sync)
        #: Told what each invalidation from another process covers, before it is applied (the
        #: region's marks: a computation under way that it covers does not store its result).
        self.on_remote: Note | None = None

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
        note_changes(self.on_remote, changes)
        apply_changes(self, self.sync, changes, self.local_tags.bump)

    def after_fork(self) -> None:
        super().after_fork()
        self.sync.after_fork()

    def close(self) -> None:
        super().close()
        self.sync.close()

    def extra_stats(self) -> dict[str, Any]:
        return self.sync.stats()


class SyncedMemoryNamespaceManager(MemoryNamespaceManager):
    store: SyncedMemoryStore
    #: The decorator's inline hit may read :attr:`table` itself while :attr:`sync` is not due for a
    #: look at the log and not degraded
    inline = "synced"

    def __init__(self, namespace: str, store: Any = None, **beaker_options: Any) -> None:
        super().__init__(namespace, store, **beaker_options)
        self.sync = self._sync = self.store.sync

    def get_entry(self, key: Hashable) -> Entry | None:
        # every hit's path: the memory lookup written out here (a call to it cost a third more)
        sync = self._sync
        if _monotonic() >= sync.due:
            sync.check()
        rec = self.table.get(key)
        if rec is None:
            return None
        rec[USED] = TICK()
        entry: Entry = rec[ENTRY]
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
