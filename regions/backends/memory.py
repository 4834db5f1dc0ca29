"""``memory``: a bounded in-process LRU shared by the threads of one process."""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Hashable
from typing import Any

from .contract import Backend, Entry, Store, is_fresh


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
        self.data: OrderedDict[tuple[str, Hashable], Entry] = OrderedDict()
        self.lock = threading.Lock()

    def namespace(self, namespace: str) -> MemoryNamespaceManager:
        return MemoryNamespaceManager(namespace, self)

    def clear(self) -> None:
        with self.lock:
            self.data.clear()

    def count(self) -> int:
        return len(self.data)


class MemoryNamespaceManager(Backend):
    store_class = MemoryStore
    store: MemoryStore

    def __init__(self, namespace: str, store: Any = None, **beaker_options: Any) -> None:
        super().__init__(namespace, store, **beaker_options)
        self._data = self.store.data

    def get_entry(self, key: Hashable) -> Entry | None:
        full = (self.namespace, key)
        entry = self._data.get(full)
        if entry is not None:
            try:
                self._data.move_to_end(full)  # atomic under the GIL; no lock on the hit path
            except KeyError:  # evicted meanwhile
                pass
        return entry

    def set_entry(self, key: Hashable, entry: Entry) -> None:
        store = self.store
        with store.lock:
            self._data[(self.namespace, key)] = entry
            self._data.move_to_end((self.namespace, key))
            while len(self._data) > store.max_entries:
                self._data.popitem(last=False)

    def delete_entry(self, key: Hashable) -> None:
        with self.store.lock:
            self._data.pop((self.namespace, key), None)

    def do_remove(self) -> None:
        with self.store.lock:
            for full in [k for k in self._data if k[0] == self.namespace]:
                del self._data[full]

    def keys(self) -> list[Any]:
        now = time.time()
        return [k[1] for k, e in list(self._data.items()) if k[0] == self.namespace and is_fresh(e, now)]
