"""``memory``: a bounded in-process LRU shared by the threads of one process.

Each namespace (decorated function) has a table of its own, ``key -> [expires, value, last use,
entry]`` (:data:`Record`), so a hit is one lookup of the key as it is (no ``(namespace, key)``
tuple to build and hash), one comparison of ``expires`` (the entry's ``stored_at + ttl``, computed
once when stored) with the clock, and one store of the time that check read (``time.time()``:
uses within one tick of the clock, or across a step back of it, are ordered arbitrarily). Past
``max_entries``, a write removes the least recently used entries of every namespace of the store,
by that time (the oldest ``1/16`` of the bound at once, so a full store rescans every
``max_entries / 16`` writes; a bound under 16 removes one at a time). Hits take no lock; writes
and removals take the store's.
"""

from __future__ import annotations

import heapq
import threading
import time
from collections.abc import Hashable
from typing import Any

from .contract import Backend, Entry, Store, is_fresh

#: The time of a use of an entry (a hit, a write): the order in which entries are evicted.
TICK = time.time

#: ``[expires, value, time of last use, entry, checked]``: what a table keeps for a key. ``expires`` is
#: ``entry[0] + entry[1]`` (the same float sum a freshness check computes), infinite without a ttl;
#: ``checked``: the decorator's inline tagged hit's mark (the tag versions' serial it was checked at).
Record = list[Any]
#: Indexes in a :data:`Record`.
EXPIRES, VALUE, USED, ENTRY, CHECKED = 0, 1, 2, 3, 4
#: ``key -> record``: one namespace's table.
Table = dict[Hashable, Record]

_FOREVER = float("inf")


def record(entry: Entry) -> Record:
    """The record of ``entry``, used now (a malformed entry expires at once: readers that check
    entries, :meth:`regions.region.Region.read`, reject it)."""
    try:
        ttl = entry[1]
        expires = _FOREVER if ttl is None else float(entry[0] + ttl)
        value = entry[2]
    except Exception:
        expires, value = -_FOREVER, None
    return [expires, value, TICK(), entry, None]


def _first(item: tuple[float, Hashable, Table]) -> float:
    return item[0]


class MemoryStore(Store):
    name = "memory"
    native_keys = True
    timed = False
    io = False
    options_schema = {
        "max_entries": ((int,), 10_000, "entries kept before the least recently used go"),
        "sync_with": ((str,), None, "memcached or file region whose storage carries this region's "
                      "invalidations to every process (regions.backends.synced)"),
        "sync_interval": ((int, float), 1.0, "with sync_with: seconds between looks at other processes' "
                          "invalidations"),
        "push": ((bool,), True, "with sync_with on a redis region: apply other processes' invalidations "
                 "the moment they are logged (False: only every sync_interval)"),
    }

    def __init__(self, region: str, location: Any, options: Any, **kwargs: Any) -> None:
        super().__init__(region, location, options, **kwargs)
        self.max_entries = int(self.options.get("max_entries", 10_000))
        #: namespace -> its table; tables are emptied in place, never replaced (namespaces hold them)
        self.tables: dict[str, Table] = {}
        self.size = 0
        self.lock = threading.Lock()

    def table(self, namespace: str) -> Table:
        """The table of ``namespace``, made on first use."""
        with self.lock:
            return self.tables.setdefault(namespace, {})

    def namespace(self, namespace: str) -> MemoryNamespaceManager:
        return MemoryNamespaceManager(namespace, self)

    def put(self, table: Table, key: Hashable, entry: Entry) -> None:
        """Store ``entry`` under ``key`` in ``table``, then evict past ``max_entries``."""
        with self.lock:
            if key not in table:
                self.size += 1
            table[key] = record(entry)
            if self.size > self.max_entries:
                self._evict()

    def _evict(self) -> None:
        """Remove the least recently used entries (lock held): down to ``max_entries`` less 1/16."""
        bound = self.max_entries
        excess = self.size - (bound - bound // 16)
        if excess <= 0:
            return
        oldest = heapq.nsmallest(
            excess,
            ((rec[USED], key, table) for table in self.tables.values() for key, rec in table.items()),
            key=_first,
        )
        for _, key, table in oldest:
            if table.pop(key, None) is not None:
                self.size -= 1

    def remove_key(self, namespace: str, key: Hashable) -> None:
        """Forget one entry (lock held by the caller)."""
        table = self.tables.get(namespace)
        if table is not None and table.pop(key, None) is not None:
            self.size -= 1

    def remove_namespace(self, namespace: str) -> None:
        """Forget every entry of ``namespace`` (lock held by the caller)."""
        table = self.tables.get(namespace)
        if table:
            self.size -= len(table)
            table.clear()

    def remove_all(self) -> None:
        """Forget every entry (lock held by the caller)."""
        for table in self.tables.values():
            table.clear()
        self.size = 0

    def clear(self) -> None:
        with self.lock:
            self.remove_all()

    def count(self) -> int:
        return self.size


class MemoryNamespaceManager(Backend):
    store_class = MemoryStore
    store: MemoryStore
    #: The decorator's inline hit may read :attr:`table` itself (a subclass whose hit does more says "")
    inline = "table"

    def __init__(self, namespace: str, store: Any = None, **beaker_options: Any) -> None:
        super().__init__(namespace, store, **beaker_options)
        #: this namespace's records (the decorator's inline hit reads it)
        self.table = self.store.table(namespace)

    def get_entry(self, key: Hashable) -> Entry | None:
        rec = self.table.get(key)
        if rec is None:
            return None
        rec[USED] = TICK()  # no lock on the hit path: a store of a number is atomic under the GIL
        return rec[ENTRY]

    def set_entry(self, key: Hashable, entry: Entry) -> None:
        self.store.put(self.table, key, entry)

    def delete_entry(self, key: Hashable) -> None:
        with self.store.lock:
            self.store.remove_key(self.namespace, key)

    def do_remove(self) -> None:
        with self.store.lock:
            self.store.remove_namespace(self.namespace)

    def keys(self) -> list[Any]:
        now = time.time()
        return [k for k, rec in list(self.table.items()) if is_fresh(rec[ENTRY], now)]
