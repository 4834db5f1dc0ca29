"""The storage contract every backend implements: the one module a backend author reads.

The interfaces, each small:

* :class:`Store`, one per region: the shared resource (memcached clients, a folder, a dict)
  plus region-wide operations (``clear``, ``ping``, ``count``);
* :class:`Backend`, a Beaker :class:`~beaker.container.NamespaceManager` with one instance per
  namespace, which reads and writes entries in that store;
* :class:`AsyncEntries` (optional), a namespace manager's read on the event loop for coroutines;
* :class:`SharedLock`, the cross-process creation lock of one key (:meth:`Backend.shared_lock`);
* leases (optional, :meth:`Backend.lease` / :meth:`Backend.set_entry_leased`): a computation takes
  one before it starts, and its store is refused when the key was deleted meanwhile (in any process);
* :class:`TagVersions`, where tag versions live (:mod:`regions.tags`); a store holds one as
  ``store.tags`` (in-process by default);
* :class:`LogStorage`, where an invalidation log's records are kept (:mod:`regions.sync`):
  :meth:`Store.sync_storage` returns one, or ``None`` when the store cannot hold a log.

Conventions a store relies on:

* A region's namespaces are ``<identity>:v<VERSION>:<module.qualname>`` (:attr:`Store.identity`
  first: what sets regions apart on shared storage). ``<identity>:~fleet`` (:data:`BOOKKEEPING`)
  holds the deployment figures: ``clear()`` and ``count()`` leave it out. Stores that Beaker
  creates itself have the identity ``"beaker"`` and Beaker's own namespaces.
* Keys are ``str`` unless :attr:`Store.native_keys` (in-process stores: any hashable tuple).
* What is stored is plain data with a format version, never a pickled class of the backend's own.

Entries are Beaker's stored tuple ``(stored_at, ttl, value)``: ``stored_at`` is ``time.time()`` at
write, ``ttl`` the lifetime in seconds or ``None`` for never. An entry is fresh while
``stored_at + ttl > now``; once expired it may still be served for ``stale`` more seconds to other
callers while one caller regenerates it under the creation lock.
"""

from __future__ import annotations

import os
import threading
import time
import weakref
from collections.abc import Hashable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, ClassVar, Protocol

from beaker.container import NamespaceManager
from beaker.synchronization import NameLock

from ..errors import UnstorableValue
from ..forks import reset_each
from ..locks import BeakerLock, SharedLock, poll
from ..signing import RejectedEntry, Signer
from ..tags.versions import LocalVersions

__all__ = ["BOOKKEEPING", "COMMON_OPTIONS", "LEASE_SECONDS", "AsyncEntries", "Backend", "BeakerLock",
           "Entries", "Entry", "Lease", "LogStorage", "SharedLock", "Store", "TagVersions", "is_fresh",
           "is_servable", "make_entry", "poll"]

Entry = tuple[float, float | None, Any]
#: What :meth:`Backend.lease` returns: opaque, handed back to :meth:`Backend.set_entry_leased` as it is.
Lease = Any
#: Least lifetime, in seconds, of what a lease leaves in the storage (a placeholder where the key is
#: absent; ``lock_timeout`` when longer): a computation that outlasts it is not stored.
LEASE_SECONDS = 3600.0

#: The last part of the namespace of a region's own bookkeeping (:mod:`regions.fleet`'s figures):
#: stored like entries, never counted, culled or cleared as entries.
BOOKKEEPING = "~fleet"


#: Options every region accepts, name -> (accepted types, default, description).
COMMON_OPTIONS: dict[str, tuple[tuple[type, ...], Any, str]] = {
    "raise_errors": ((bool,), False, "let backend errors reach the caller instead of logging them"),
    "stale": ((int, float), 30, "seconds an expired value is still served while one caller recomputes"),
    "lock_timeout": ((int, float), 30, "longest wait, in seconds, for another caller's computation"),
}


def make_entry(value: Any, ttl: float | None) -> Entry:
    """Build the stored tuple for ``value`` living ``ttl`` seconds (``None``: forever)."""
    return (float(time.time()), ttl, value)  # float even under a test's mocked clock (readers check)


def is_fresh(entry: Entry, now: float) -> bool:
    ttl = entry[1]
    return ttl is None or entry[0] + ttl > now


def is_servable(entry: Entry, now: float, stale: float) -> bool:
    """Fresh, or expired less than ``stale`` seconds ago."""
    ttl = entry[1]
    return ttl is None or entry[0] + ttl + stale > now



class TagVersions(Protocol):
    """Where a store keeps tag versions (:mod:`regions.tags`). A version is compared for equality
    only; every method raises when the storage cannot be reached."""

    def read(self, names: list[str]) -> list[int | None]:
        """Current version of each tag (``None``: none yet; entries carrying it miss)."""
        ...

    def create(self, names: list[str]) -> list[int]:
        """Versions of the tags, missing ones created (on a miss, before the computation)."""
        ...

    def bump(self, names: list[str]) -> None:
        """New versions for the tags that have one; raises when no storage took the bump."""
        ...


class LogStorage(Protocol):
    """Where an invalidation log (:mod:`regions.sync`) keeps its counter and records: a backend
    supplies only this; the record format, the reader and its gap and reset rules are
    :mod:`regions.sync`'s. Every method raises when the storage cannot be reached.

    Optional: ``wait(after: int, timeout: float) -> bool`` blocks until a record numbered above
    ``after`` exists, or ``timeout`` seconds pass, and says whether one does (Redis: ``XREAD
    BLOCK``). A reader may wait on it instead of polling ``head``; storage without it is polled."""

    def head(self) -> int:
        """The current ``seq`` (created, above any value used before, when missing)."""
        ...

    def append(self, record: bytes) -> int:
        """Store ``record`` under the next ``seq`` and return that number."""
        ...

    def records(self, first: int, last: int) -> dict[int, bytes]:
        """The records ``first`` .. ``last`` that are present."""
        ...


class Entries(Protocol):
    """What the engine and the region read and write: a namespace manager (:class:`Backend`), or a
    view of one (a tagged call's :class:`regions.tags.view.TaggedView`)."""

    namespace: str

    def get_entry(self, key: Hashable) -> Entry | None: ...
    def set_entry(self, key: Hashable, entry: Entry) -> None: ...
    def delete_entry(self, key: Hashable) -> None: ...
    def wire_key(self, key: Hashable) -> Hashable: ...
    def storage_token(self) -> Hashable: ...
    def shared_lock(self, key: Hashable) -> SharedLock | None: ...
    def lease(self, key: Hashable) -> Lease | None: ...
    def set_entry_leased(self, key: Hashable, entry: Entry, lease: Lease) -> bool: ...
    def down_since(self, key: Hashable) -> float | None: ...


class AsyncEntries(Protocol):
    """Optional: the read of :class:`Entries` for coroutines, on the event loop. A backend whose
    namespace manager has ``aget_entry`` serves an ``async def`` function's hits without a hop to
    :attr:`Store.executor` (memcached: :mod:`regions.backends.memcached.aio`); without it, the read
    runs on the I/O threads, as every other backend call of a coroutine does (misses, locks, leases
    and stores always do).

    ``aget_entry`` returns and raises exactly what ``get_entry`` does (the region applies the same
    checks and failure policy, :meth:`regions.region.Region.aread`), must never block the loop (what
    cannot be done on it, it awaits on :attr:`Store.executor`), and uses connections of the running
    loop only: loops differ per thread, and a forked child must not use its parent's connections.
    A network failure it meets counts for the backend's breaker as the blocking path's would.

    ``aget_entry_tagged(key, names)``, also optional, is the same for
    :meth:`Backend.get_entry_tagged`: where a namespace manager has it, a coroutine's tagged hit is
    read on the loop too (:class:`regions.tags.view.LoopTaggedView`)."""

    namespace: str

    async def aget_entry(self, key: Hashable) -> Entry | None: ...


class Store:
    """Region-wide state of one backend: built once per region from its settings."""

    #: Name used in ``BACKEND`` and in Beaker's registry as ``regions.<name>``.
    name: ClassVar[str] = ""
    #: ``True``: LOCATION required; ``False``: LOCATION must be absent.
    needs_location: ClassVar[bool] = False
    #: Backend-specific options, same shape as :data:`COMMON_OPTIONS`.
    options_schema: ClassVar[dict[str, tuple[tuple[type, ...], Any, str]]] = {}
    #: Keys may be any hashable tuple (in-process stores); otherwise keys are text.
    native_keys: ClassVar[bool] = False
    #: Longest key in bytes, or ``None``.
    key_limit: ClassVar[int | None] = None
    #: Time backend calls for ``stats()`` (not in-process stores: timing would cost more than the call).
    timed: ClassVar[bool] = True
    #: Backend calls block on I/O: coroutines run them on :attr:`executor`, never on the event loop.
    io: ClassVar[bool] = True
    #: Threads of :attr:`executor`: the most backend calls coroutines have under way at once.
    io_threads: ClassVar[int] = 8

    #: Its :meth:`sync_storage` logs offer ``wait`` (:class:`LogStorage`): invalidations are pushed.
    pushes: ClassVar[bool] = False
    #: Entries leave the process (memcached, files): they are tagged by :attr:`signer`.
    signs: ClassVar[bool] = False

    def __init__(
        self,
        region: str,
        location: Any,
        options: Mapping[str, Any],
        *,
        identity: str | None = None,
        signer: Signer | None = None,
    ) -> None:
        self.region = region
        #: Tags entries stored outside the process (:mod:`regions.signing`); unkeyed without a secret.
        self.signer = signer if signer is not None else Signer(None)
        #: Names this region's data among other regions' on shared storage (key prefix + name).
        self.identity = identity or region
        self.location = location
        self.options = dict(options)
        self.stale = float(self.options.get("stale", COMMON_OPTIONS["stale"][1]))
        self.lock_timeout = float(self.options.get("lock_timeout", COMMON_OPTIONS["lock_timeout"][1]))
        self._executor: ThreadPoolExecutor | None = None
        #: Where this region's tag versions live (:class:`TagVersions`); in-process by default.
        self.tags: TagVersions = LocalVersions()
        _STORES.add(self)

    @property
    def shared(self) -> Store | None:
        """The store other processes share with this one: itself for memcached and file regions,
        the linked store for synced and tiered regions, ``None`` for a region of this process only."""
        return self if self.location is not None else None

    @classmethod
    def for_options(cls, options: Mapping[str, Any]) -> type[Store]:
        """The class that builds a region with these (valid) options: a variant may take over
        (the built-in ones are listed in :data:`regions.backends.VARIANTS`)."""
        return cls

    def sync_storage(self, name: str) -> LogStorage | None:
        """Where an invalidation log named ``name`` can live on this store
        (a :class:`regions.backends.contract.LogStorage`), or ``None`` when it cannot hold one."""
        return None

    def derive(self, region: str, identity: str) -> Store | None:
        """A store on the same servers or folder for region ``region`` (a tiered region's shared
        tier), whose ``clear()`` touches only its own entries; ``None`` when it cannot be shared."""
        return None

    def reread(self) -> None:
        """Another process cleared: drop what this process keeps of the storage's counters."""

    def extra_stats(self) -> dict[str, Any]:
        """Backend-specific figures added to the region's ``stats()``."""
        return {}

    def link(self, stores: Mapping[str, Store]) -> None:
        """Called once every region of the configuration is built (``stores`` by region name): a
        store that works through another region's store (``sync_with``, ``over``) finds it here."""

    def storage_id(self) -> Hashable:
        """Equal for two stores on the same storage (two managers of one config in a process):
        they then share in-process flights. In-process stores are their own storage."""
        return (self.name, repr(self.location)) if self.location is not None else id(self)

    @property
    def executor(self) -> ThreadPoolExecutor:
        """Threads that run this store's backend calls for coroutines (made on first use)."""
        executor = self._executor
        if executor is None:
            executor = self._executor = ThreadPoolExecutor(
                self.io_threads, thread_name_prefix=f"regions-{self.region}"
            )
        return executor

    @classmethod
    def check_location(cls, location: Any) -> str | None:
        """Return a message when ``location`` is malformed for this backend, else ``None``."""
        return None

    @classmethod
    def check_settings(cls, location: Any, options: Mapping[str, Any]) -> list[tuple[str, str, str]]:
        """``(setting, problem, remedy)`` for what the option types cannot judge alone (how options
        combine, a package the backend needs); the settings check reports each as E005."""
        return []

    def namespace(self, namespace: str) -> Backend:
        """The namespace manager for ``namespace`` in this store."""
        raise NotImplementedError

    def clear(self) -> None:
        """Remove (or make unreachable) every entry of this region, and nothing else."""
        raise NotImplementedError

    def ping(self) -> bool:
        """Whether the backend answers now."""
        return True

    def count(self) -> int | None:
        """Number of entries, where the backend can count them."""
        return None

    @property
    def active(self) -> bool:
        """Whether the store caches right now (the request store only inside a scope)."""
        return True

    def close(self) -> None:
        """Release connections, files and threads. Calls may still be running on the I/O threads
        (they are not waited for): release only what no call can still be using, or let it fail
        cleanly (a connection another thread holds must not be closed under it)."""
        _STORES.discard(self)  # a forked child does not rebuild a closed store (nor reconnect it)
        executor, self._executor = self._executor, None
        if executor is not None:
            executor.shutdown(wait=False)

    def after_fork(self) -> None:
        """In a forked child: drop what belongs to the parent (threads; subclasses: sockets)."""
        self._executor = None


_STORES: weakref.WeakSet[Store] = weakref.WeakSet()
#: Stores of the namespace managers that Beaker creates itself (see :meth:`Backend.beaker_store`).
_BEAKER_STORES: dict[tuple[type[Store], str], Store] = {}
_BEAKER_STORES_LOCK = threading.Lock()


def _describe(store: Store) -> str:
    return f"cache region {store.region!r} ({store.name})"


def _after_fork_in_child() -> None:
    reset_each(_STORES, _describe)  # (one store's failure leaves the others reset)


os.register_at_fork(after_in_child=_after_fork_in_child)


class Backend(NamespaceManager):
    """A Beaker namespace manager bound to one namespace of one :class:`Store`.

    The fast path used by regions is :meth:`get_entry` / :meth:`set_entry` (one backend round trip
    each). The Beaker dictionary interface (``ns[key]``, ``key in ns``, ``set_value``, ``del``,
    ``do_remove``, ``get_creation_lock``) is built on them, so Beaker's own ``Cache``/``Value``
    objects can use these managers too.
    """

    store_class: ClassVar[type[Store]]
    namespace: str

    def __init__(self, namespace: str, store: Store | None = None, **beaker_options: Any) -> None:
        super().__init__(namespace)
        if store is None:  # created by Beaker itself: share one store per backend and location
            store = self.beaker_store(beaker_options.get("url") or beaker_options.get("data_dir"))
        self.store = store
        self.timeout: float | None = beaker_options.get("timeout")  # Beaker's sessions pass theirs

    @classmethod
    def beaker_store(cls, location: Any) -> Store:
        """The store of the managers Beaker creates for ``location``: one per (store class, location),
        so that two of them for one namespace share entries and creation locks, as Beaker's own do."""
        key = (cls.store_class, repr(location))
        with _BEAKER_STORES_LOCK:
            store = _BEAKER_STORES.get(key)
            if store is None:
                store = _BEAKER_STORES[key] = cls.store_class("beaker", location, {})
        return store

    # fast path -------------------------------------------------------------------------------
    def get_entry(self, key: Hashable) -> Entry | None:
        """The stored entry for ``key`` (fresh, or expired within ``stale``), else ``None``."""
        raise NotImplementedError

    def set_entry(self, key: Hashable, entry: Entry) -> None:
        raise NotImplementedError

    def delete_entry(self, key: Hashable) -> None:
        raise NotImplementedError

    def lease(self, key: Hashable) -> Lease | None:
        """Taken by a computation of ``key`` before it starts; its store hands it back to
        :meth:`set_entry_leased`. A delete of ``key`` in any process after the lease was taken voids
        it (memcached leases: "Scaling Memcache at Facebook", NSDI 2013), so a computation that an
        invalidation made obsolete cannot store its value over the delete.

        Optional: ``None`` (the default) means no lease, and the store is a plain :meth:`set_entry`.
        A lease leaves nothing that a reader takes for an entry: whatever it stores at the key is
        read as a miss by every reader (:meth:`get_entry`, :meth:`get_entry_tagged`, Beaker's).
        """
        return None

    def set_entry_leased(self, key: Hashable, entry: Entry, lease: Lease) -> bool:
        """Store ``entry`` unless ``key`` was deleted (or written) since ``lease`` was taken:
        ``False`` when the store was refused (not an error: the value is not stored)."""
        self.set_entry(key, entry)
        return True

    # batches (optional: the defaults loop over the single-key calls) ------------------------------
    def get_entries(
        self, keys: Sequence[Hashable]
    ) -> tuple[dict[Hashable, Entry | RejectedEntry], Exception | None]:
        """The entries of ``keys`` found (an entry that is not ours as its :class:`RejectedEntry`),
        and the first failure: keys it kept from being read are absent, as misses. memcached: one
        round trip per server."""
        found: dict[Hashable, Entry | RejectedEntry] = {}
        failure: Exception | None = None
        for key in keys:
            try:
                entry = self.get_entry(key)
            except RejectedEntry as exc:
                found[key] = exc
                continue
            except Exception as exc:
                failure = failure or exc
                continue
            if entry is not None:
                found[key] = entry
        return found, failure

    def set_entries(self, entries: Mapping[Hashable, Entry]) -> tuple[list[Hashable], Exception | None]:
        """Store each entry (plain :meth:`set_entry`, no lease): the keys not stored, and the first
        failure. A value that cannot be stored at all raises before anything is written where the
        backend can tell (memcached)."""
        failed: list[Hashable] = []
        failure: Exception | None = None
        for key, entry in entries.items():
            try:
                self.set_entry(key, entry)
            except Exception as exc:
                if isinstance(exc, UnstorableValue):
                    raise
                failed.append(key)
                failure = failure or exc
        return failed, failure

    def delete_entries(self, keys: Sequence[Hashable]) -> tuple[list[Hashable], Exception | None]:
        """Delete each key as :meth:`delete_entry` does (one that fails is retried where the backend
        can): the keys whose delete did not reach the storage, and the first failure."""
        failed: list[Hashable] = []
        failure: Exception | None = None
        for key in keys:
            try:
                self.delete_entry(key)
            except Exception as exc:
                failed.append(key)
                failure = failure or exc
        return failed, failure

    def get_entry_tagged(self, key: Hashable, names: list[str]) -> tuple[Entry | None, Sequence[int | None]]:
        """:meth:`get_entry` and the current versions of tags ``names`` (memcached: one round trip)."""
        return self.get_entry(key), self.store.tags.read(names)

    def create_tags(self, key: Hashable, names: list[str]) -> list[int]:
        """The versions an entry of ``key`` is stored with, creating missing tags (a miss only)."""
        return self.store.tags.create(names)

    def wire_key(self, key: Hashable) -> Hashable:
        """The key exactly as the storage sees it: it names the namespace too (``cache_key()``
        of a decorated function returns it)."""
        return (self.namespace, key)

    def storage_token(self) -> Hashable:
        """What, besides the key, tells one storage apart: callers sharing it may share a computation."""
        return None

    def down_since(self, key: Hashable) -> float | None:
        """When (``time.monotonic()``) the server holding ``key`` was marked down, ``None`` while it
        is up, or for a store without a server. A call already waiting on that server when it was
        marked down may wait out its timeout; any later call is skipped at once."""
        return None

    def shared_lock(self, key: Hashable) -> SharedLock | None:
        """The cross-process creation lock for ``key``, or ``None`` for a process-local store.

        The engine re-reads the entry after acquiring it (another process may have stored it).
        """
        return None

    def update_lock(self, key: Hashable) -> SharedLock | None:
        """The cross-process lock of a read-modify-write of ``key`` (Django's ``add``, ``incr``,
        ``touch``): :meth:`shared_lock`, or a lock the backend takes even where creation is not
        locked across processes (memcached without ``distributed_lock``)."""
        return self.shared_lock(key)

    # Beaker's NamespaceManager interface ---------------------------------------------------
    # ``ns[key] = value`` / ``ns.set_value(key, value, expiretime)`` store ``value`` as it is, and
    # ``ns[key]`` returns it (Beaker's ``Value`` stores its own ``(storedtime, expire, value)``
    # tuples this way; its ``SessionMiddleware`` stores plain dicts). Beaker's ``Cache`` passes a
    # text key encoded (``'ascii', 'backslashreplace'``) and its callers pass text: both name one
    # entry, as in Beaker's own ext:redis / ext:memcached managers (``_beaker_key``). Without an
    # ``expiretime``, an entry lives the manager's ``timeout`` (Beaker's sessions give theirs).
    @staticmethod
    def _beaker_key(key: Hashable) -> Hashable:
        return key.decode("ascii", "backslashreplace") if isinstance(key, bytes) else key

    def _beaker_entry(self, key: Hashable) -> Entry | None:
        try:
            entry = self.get_entry(self._beaker_key(key))
        except RejectedEntry:
            return None  # not ours: a miss, as for a region
        return entry if entry is not None and is_fresh(entry, time.time()) else None

    def __getitem__(self, key: Hashable) -> Any:
        entry = self._beaker_entry(key)
        if entry is None:
            raise KeyError(key)
        return entry[2]

    def __contains__(self, key: Hashable) -> bool:
        return self._beaker_entry(key) is not None

    def __setitem__(self, key: Hashable, value: Any) -> None:
        self.set_value(key, value)

    def set_value(self, key: Hashable, value: Any, expiretime: float | None = None) -> None:
        self.set_entry(self._beaker_key(key), make_entry(value, expiretime or self.timeout or None))

    def __delitem__(self, key: Hashable) -> None:
        self.delete_entry(self._beaker_key(key))

    def get_creation_lock(self, key: Hashable) -> BeakerLock:
        """Beaker's creation lock: the in-process lock for ``key``, then :meth:`shared_lock`."""
        key = self._beaker_key(key)
        ident = (id(self.store), self.namespace, self.storage_token(), key)
        local = NameLock(identifier=ident, reentrant=True)
        return BeakerLock(local, self.shared_lock(key), self.store.lock_timeout)

    def keys(self) -> list[Any]:
        raise NotImplementedError(f"{type(self).__name__} cannot list its keys")
