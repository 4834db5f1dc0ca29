"""``tiered``: a process-local LRU in front of a shared tier on the ``over`` region's storage.

A read tries this process's entries first (a dict lookup), then the shared tier (the ``over``
region's memcached servers or folder, under this region's own keys), and keeps what it found. A
value computed in one process is stored in both tiers, so the other processes read it from the
shared tier instead of computing it again (and the shared tier's creation lock makes one process
compute). Invalidations delete from both tiers and travel to every process's local tier through
the invalidation log (:mod:`regions.sync`) within ``sync_interval`` (over a redis region: pushed,
within milliseconds, :mod:`regions.sync.push`; OPTIONS ``push``). While the log cannot be read,
local entries older than ``sync_interval`` are not served (the shared tier still is).

The shared tier is a store of its own (:meth:`~regions.backends.contract.Store.derive`): ``clear()`` of this
region never clears the ``over`` region's entries, nor the other way round.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Hashable, Mapping
from typing import Any, cast

from .. import keys
from ..errors import ConfigurationError
from ..sync import LocalSync, Note, Record, apply_changes, note_changes
from ..tags.versions import MAX_TAGS
from .contract import Backend, Entry, Lease, SharedLock, Store
from .memory import ENTRY, TICK, USED, MemoryNamespaceManager, MemoryStore

_monotonic = time.monotonic  # a module global: the hit path's clock, compared with ``sync.due``


def shared_key(key: Hashable) -> str:
    """The shared tier's key for a local key: the text the decorator builds for other stores."""
    if isinstance(key, str):
        return key
    return ",".join(keys.encode(part) for part in cast(tuple[Any, ...], key))


def _all(*steps: Callable[[], Any]) -> None:
    """Run every step even when one fails; then raise the first failure."""
    failure: BaseException | None = None
    for step in steps:
        try:
            step()
        except Exception as exc:
            failure = failure or exc
    if failure is not None:
        raise failure


class SharedTierVersions:
    """A tiered region's tag versions: the shared tier's counters, kept in this process until a
    record of the log names the tag (or a reset drops them all)."""

    def __init__(self, store: TieredStore) -> None:
        self.store = store
        #: Versions read by this process (dropped when a record names the tag, or on a reset).
        self.cache: dict[str, int] = {}
        self.epoch = 0

    def read(self, names: list[str]) -> list[int | None]:
        known = self.cache
        missing = [name for name in names if name not in known]
        if not missing:
            return [known[name] for name in names]
        epoch = self.epoch
        found = dict(zip(missing, self.store.far.tags.read(missing), strict=True))
        if epoch == self.epoch:  # else a bump came meanwhile: what was read may be older
            if len(known) >= MAX_TAGS:  # bounded, like in-process versions: read again when needed
                known.clear()
            known.update((name, v) for name, v in found.items() if v is not None)
        return [known[name] if name in known else found.get(name) for name in names]

    def create(self, names: list[str]) -> list[int]:
        epoch = self.epoch
        versions = self.store.far.tags.create(names)
        if epoch == self.epoch:
            self.cache.update(zip(names, versions, strict=True))
        return versions

    def bump(self, names: list[str]) -> None:
        store = self.store

        def bump() -> None:
            try:
                store.far.tags.bump(names)
            finally:
                self.forget(names)

        _all(bump, lambda: store.sync.publish("tags", tags=names))

    def forget(self, names: list[str] | None) -> None:
        """Drop the versions of ``names`` (``None``: all) kept in this process."""
        self.epoch += 1
        if names is None:
            self.cache.clear()
        for name in names or ():
            self.cache.pop(name, None)


class TieredStore(Store):
    name = "tiered"
    native_keys = True
    timed = False
    options_schema = {
        "over": ((str,), None, "memcached or file region (or one whose store implements derive) "
                 "holding the shared tier"),
        "max_entries": ((int,), 10_000, "entries kept in each process before the least recently used go"),
        "sync_interval": ((int, float), 1.0, "seconds between looks at other processes' invalidations"),
        "push": ((bool,), True, "over a redis region: apply other processes' invalidations the moment "
                 "they are logged (False: only every sync_interval)"),
    }

    def __init__(self, region: str, location: Any, options: Any, **kwargs: Any) -> None:
        super().__init__(region, location, options, **kwargs)
        if not self.options.get("over"):  # settings are checked first (E008): Beaker's own Cache
            raise ConfigurationError(
                f"region {region!r}: a tiered region needs OPTIONS 'over' naming a memcached or file "
                "region; build it from region settings (CacheManager / CACHE_REGIONS), not Beaker's Cache",
                region=region, option="over",
            )
        self.over = str(self.options["over"])
        self.local = MemoryStore(region, None, {"max_entries": int(self.options.get("max_entries", 10_000))})
        interval = float(self.options.get("sync_interval", 1.0))
        self.sync = LocalSync(region, self.identity, interval, self._apply,
                              push=bool(self.options.get("push", True)))
        self.far: Store = self.local  # the shared tier, from link()
        self.tags: SharedTierVersions = SharedTierVersions(self)
        #: Told what each invalidation from another process covers (see the synced store's).
        self.on_remote: Note | None = None

    def link(self, stores: Mapping[str, Store]) -> None:
        over = stores[self.over]
        far = over.derive(self.region, self.identity)
        if far is None:
            raise ValueError(f"region {self.region!r}: region {self.over!r} cannot hold a shared tier")
        self.far = far
        self.sync.attach(far)

    @property
    def shared(self) -> Store | None:
        return self.sync.shared

    def storage_id(self) -> Hashable:
        return (self.name, self.identity, self.far.storage_id())

    def namespace(self, namespace: str) -> TieredNamespaceManager:
        return TieredNamespaceManager(namespace, self)

    def clear(self) -> None:
        self.local.clear()
        self.sync.counts["own_clears"] += 1
        _all(self.far.clear, lambda: self.sync.publish("clear"))

    def _apply(self, changes: list[Record] | None) -> None:
        note_changes(self.on_remote, changes)  # first: a computation under way must not store over them
        if changes is None or changes:
            # The shared tier changed, perhaps by more than the records say (a writer that could
            # not build a key's name bumps its whole namespace there): its counters are read again
            # before this process reads it, so no local miss refills from the old generation.
            self.far.reread()
        if changes is None:
            self.tags.forget(None)
        apply_changes(self.local, self.sync, changes, self.tags.forget)

    def ping(self) -> bool:
        return self.far.ping()

    def count(self) -> int:
        """Entries in this process's tier."""
        return self.local.count()

    def extra_stats(self) -> dict[str, Any]:
        return {**self.sync.stats(), "local_entries": self.local.count()}

    def after_fork(self) -> None:
        super().after_fork()
        self.sync.after_fork()

    def close(self) -> None:
        super().close()
        self.sync.close()
        if self.far is not self.local:
            self.far.close()


class TieredNamespaceManager(Backend):
    store_class = TieredStore
    store: TieredStore

    def __init__(self, namespace: str, store: Any = None, **beaker_options: Any) -> None:
        super().__init__(namespace, store, **beaker_options)
        self.local: MemoryNamespaceManager = self.store.local.namespace(namespace)
        self.far = self.store.far.namespace(namespace)
        self.table = self._local_table = self.local.table
        self.sync = self.store.sync

    #: The decorator's inline hit may read the local tier's :attr:`table` itself while :attr:`sync`
    #: is not due for a look at the log and not degraded (else, and on a local miss, get_entry)
    inline = "synced"

    def get_entry(self, key: Hashable) -> Entry | None:
        sync = self.store.sync
        if _monotonic() >= sync.due:
            sync.check()
        rec = self._local_table.get(key)  # the local lookup written out: every hit's path
        if rec is not None:
            local: Entry = rec[ENTRY]
            if not sync.degraded or sync.trusted(local):
                rec[USED] = TICK()
                return local
        applied = sync.applied
        entry = self.far.get_entry(shared_key(key))
        if entry is not None and sync.applied == applied:  # else an invalidation came meanwhile
            self.local.set_entry(key, entry)
        return entry

    def set_entry(self, key: Hashable, entry: Entry) -> None:
        sync = self.store.sync
        if _monotonic() >= sync.due:  # the first look comes before anything is stored
            sync.check()
        self.local.set_entry(key, entry)
        self.far.set_entry(shared_key(key), entry)

    def lease(self, key: Hashable) -> Lease | None:
        """The shared tier's lease: another process's delete reaches the shared tier at once (the
        local tiers only through the log, within ``sync_interval``)."""
        return self.far.lease(shared_key(key))

    def set_entry_leased(self, key: Hashable, entry: Entry, lease: Lease) -> bool:
        """Both tiers, or neither: kept locally only when the shared tier took it."""
        sync = self.store.sync
        if _monotonic() >= sync.due:
            sync.check()
        if not self.far.set_entry_leased(shared_key(key), entry, lease):
            return False
        self.local.set_entry(key, entry)
        return True

    def delete_entry(self, key: Hashable) -> None:
        self.local.delete_entry(key)
        text = shared_key(key)
        sync = self.store.sync
        _all(lambda: self.far.delete_entry(text), lambda: sync.publish("key", self.namespace, key))

    def do_remove(self) -> None:
        self.local.do_remove()
        _all(self.far.do_remove, lambda: self.store.sync.publish("namespace", self.namespace))

    def wire_key(self, key: Hashable) -> Hashable:
        return self.far.wire_key(shared_key(key))

    def storage_token(self) -> Hashable:
        return self.far.storage_token()

    def down_since(self, key: Hashable) -> float | None:
        return self.far.down_since(shared_key(key))

    def shared_lock(self, key: Hashable) -> SharedLock | None:
        return self.far.shared_lock(shared_key(key))

    def update_lock(self, key: Hashable) -> SharedLock | None:
        return self.far.update_lock(shared_key(key))

    def keys(self) -> list[Any]:
        return self.local.keys()
