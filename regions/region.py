"""A configured region: its store, counters, failure policy and the get-or-create protocol.

Every front end (the decorator, :class:`django_regions.cache.RegionCache`, the metrics) goes
through the public methods here: :meth:`Region.read` / :meth:`Region.lookup` / :meth:`Region.peek`
read, :meth:`Region.store_entry` / :meth:`Region.put` write, :meth:`Region.remove` /
:meth:`Region.remove_all` / :meth:`Region.clear` invalidate, :meth:`Region.locked` guards a
read-modify-write, and :meth:`Region.counters` gives the raw counts. Each applies the region's
failure policy: a failure is counted and logged (throttled) and read as a miss, unless
``raise_errors`` is set.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Awaitable, Callable, Hashable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any, TypeVar

from . import keys
from . import trace as _trace
from .backends.contract import AsyncEntries, Backend, Entries, Entry, Lease, SharedLock, Store, make_entry
from .engine import Engine
from .engine.marks import InvalidationMarks
from .errors import BackendUnavailable, LockTimeout, UnstorableValue, describe
from .locks import UPDATE_LOCKS
from .signing import RejectedEntry
from .stats import COUNTERS, Stats
from .throttle import LOG_EVERY, Throttle

log = logging.getLogger("regions")
T = TypeVar("T")


class _Default:
    def __repr__(self) -> str:
        return "DEFAULT"


#: "Use the region's TIMEOUT" (``None`` means "never expire").
DEFAULT: Any = _Default()

#: Namespace of keys set directly on a region (``region.set(...)``): module names never start
#: with ``~``; the region's identity, part of every namespace, keeps regions apart.
DIRECT = "~"
__all__ = ["COUNTERS", "DEFAULT", "LOG_EVERY", "READ_SAMPLE", "UNREADABLE", "Region", "Stats", "identity"]

#: One read in this many is timed for ``stats()["mean_latency"]``.
READ_SAMPLE = 8


class _Unreadable:
    def __repr__(self) -> str:
        return "UNREADABLE"


#: What :meth:`Region.peek` returns when the backend failed (a miss for reads, "unknown" for
#: Django's ``add``).
UNREADABLE: Any = _Unreadable()


def identity(key_prefix: str, name: str) -> str:
    """What sets a region's data apart on shared storage: length-prefixed, so never ambiguous."""
    return f"{len(key_prefix)}:{key_prefix}:{len(name)}:{name}"


class Region:
    """One named cache: a backend store, a default lifetime and the get-or-create protocol."""

    #: Called with the seconds of each timed backend call (``None``: nothing; django_regions.metrics).
    on_timing: Callable[[float], None] | None = None

    def __init__(
        self,
        name: str,
        store: Store,
        *,
        timeout: float | None,
        key_prefix: str = "",
        version: int = 1,
        location: Any = None,
    ) -> None:
        self.name = name
        self.store = store
        self.backend = store.name
        self.location = location
        self.timeout = timeout
        self.options = store.options
        self.key_prefix = key_prefix
        self.version = version
        self.raise_errors = bool(store.options.get("raise_errors", False))
        self.stale = store.stale
        self.lock_timeout = store.lock_timeout
        #: This process's counters (plain integers: exact in one thread, approximate under contention).
        self.counts = Stats()
        self._namespaces: dict[str, Backend] = {}
        self._namespaces_lock = threading.Lock()
        self.engine = Engine(self)
        #: Invalidations noted in this process: a computation they may touch does not store.
        self.marks = InvalidationMarks()
        self._throttle = Throttle(f"cache region {name!r} ({self.backend}): ", LOG_EVERY)
        if hasattr(store, "on_remote"):  # invalidations from other processes count as ours, each as narrow
            store.on_remote = self.marks.note

    def __repr__(self) -> str:
        return f"<Region {self.name!r} backend={self.backend!r} timeout={self.timeout!r}>"

    # namespaces and keys ---------------------------------------------------------------------
    def namespace_name(self, qualname: str) -> str:
        """``<identity>:v<VERSION>:<module.qualname>``: the region's identity is in every key."""
        return f"{self.store.identity}:v{self.version}:{qualname}"

    def namespace(self, qualname: str) -> Backend:
        """The Beaker namespace manager holding ``qualname``'s entries in this region."""
        manager = self._namespaces.get(qualname)
        if manager is None:
            with self._namespaces_lock:
                manager = self._namespaces.get(qualname)
                if manager is None:
                    manager = self.store.namespace(self.namespace_name(qualname))
                    self._namespaces[qualname] = manager
        return manager

    def ttl(self, timeout: Any) -> float | None:
        return self.timeout if timeout is DEFAULT else timeout

    @property
    def active(self) -> bool:
        """``False`` while the region does not cache (a request region outside a request scope)."""
        return self.store.active

    # errors ----------------------------------------------------------------------------------
    def failed(self, operation: str, exc: BaseException, *, reraise: bool = True) -> None:
        """Count and log a backend failure; re-raise it when the region's ``raise_errors`` is set
        (and ``reraise``: a clean-up after a failure that is being raised already never raises).

        A call skipped because its server is marked down counts as ``unavailable``; the failure that
        marked it down is logged by the breaker (:mod:`regions.breaker`), not again here.
        """
        if isinstance(exc, BackendUnavailable):
            self.counts.unavailable += 1
        else:
            self.counts.errors += 1
        _trace.failed()  # the traced call in progress, if any, had a backend error
        if self.raise_errors and reraise:
            raise exc
        if not isinstance(exc, BackendUnavailable) and not getattr(exc, "regions_logged", False):
            self._throttle.warning(
                "%s failed: %s; using the function's own result", operation, describe(exc)
            )

    def reject(self, ns: Entries, key: Hashable, why: str) -> None:
        """Count and log a stored entry that is not one of ours (planted, altered, malformed): it is
        read as a miss, never unpickled, and rewritten. The log names the namespace (the function)
        and a digest of the key, never the key: it holds the arguments, perhaps personal data."""
        self.counts.rejected += 1
        self._throttle.warning(
            "rejected %s in %s (key digest %s); recomputing it", why, ns.namespace,
            self.store.signer.key_digest(key),
        )

    def _timed(self, call: Callable[..., T], *args: Any) -> T:
        stats = self.counts
        stats.calls += 1
        if not self.store.timed:
            return call(*args)
        start = time.perf_counter()
        try:
            return call(*args)
        finally:
            elapsed = time.perf_counter() - start
            stats.timed_time += elapsed
            stats.timed += 1
            if self.on_timing is not None:
                self.on_timing(elapsed)

    def read(self, ns: Entries, key: Hashable) -> tuple[Entry | None, bool]:
        """The stored entry (``None`` on a miss, a failure or a malformed entry) and whether it is fresh.

        A fresh entry counts as a hit. This is every decorated call's path: one read in
        :data:`READ_SAMPLE` is timed, and the timing is written out here rather than called.
        """
        stats = self.counts
        stats.calls += 1
        try:
            if stats.calls % READ_SAMPLE or not self.store.timed:
                entry = ns.get_entry(key)
            else:
                start = time.perf_counter()
                entry = ns.get_entry(key)
                elapsed = time.perf_counter() - start
                stats.timed_time += elapsed
                stats.timed += 1
                if self.on_timing is not None:
                    self.on_timing(elapsed)
        except RejectedEntry as exc:
            self.reject(ns, key, str(exc))
            return None, False
        except Exception as exc:
            self.failed("get", exc)
            return None, False
        if entry is None:
            return None, False
        try:
            if type(entry) is not tuple or len(entry) != 3 or type(entry[0]) is not float:
                raise TypeError
            ttl = entry[1]
            fresh = ttl is None or entry[0] + ttl > time.time()
        except TypeError:  # not an entry, or stored_at / ttl are not numbers
            self.reject(ns, key, f"a malformed entry ({type(entry).__name__})")
            return None, False
        if fresh:
            stats.hits += 1
        return entry, fresh

    async def aread(self, ns: AsyncEntries, key: Hashable) -> tuple[Entry | None, bool]:
        """:meth:`read` for coroutines, through the backend's read on the event loop
        (:class:`~regions.backends.contract.AsyncEntries`): the same counts, checks and failure
        policy. (:meth:`read` writes its checks out for speed; :meth:`_judged` is the same.)"""
        stats = self.counts
        stats.calls += 1
        try:
            if stats.calls % READ_SAMPLE or not self.store.timed:
                entry = await ns.aget_entry(key)
            else:
                start = time.perf_counter()
                entry = await ns.aget_entry(key)
                elapsed = time.perf_counter() - start
                stats.timed_time += elapsed
                stats.timed += 1
                if self.on_timing is not None:
                    self.on_timing(elapsed)
        except RejectedEntry as exc:
            self.reject(ns, key, str(exc))  # type: ignore[arg-type]
            return None, False
        except Exception as exc:
            self.failed("get", exc)
            return None, False
        return self._judged(ns, key, entry)

    def _judged(self, ns: Any, key: Hashable, entry: Any) -> tuple[Entry | None, bool]:
        """What :meth:`read` makes of what the backend returned: a miss, a rejected malformed
        entry, or the entry and whether it is fresh (then a hit)."""
        if entry is None:
            return None, False
        try:
            if type(entry) is not tuple or len(entry) != 3 or type(entry[0]) is not float:
                raise TypeError
            ttl = entry[1]
            fresh = ttl is None or entry[0] + ttl > time.time()
        except TypeError:  # not an entry, or stored_at / ttl are not numbers
            self.reject(ns, key, f"a malformed entry ({type(entry).__name__})")
            return None, False
        if fresh:
            self.counts.hits += 1
        return entry, fresh

    def lookup(self, ns: Entries, key: Hashable, default: Any = None) -> Any:
        """The fresh value of ``key``, counted as a hit, or ``default``, counted as a miss."""
        entry, fresh = self.read(ns, key)
        if fresh:
            return entry[2]  # type: ignore[index]
        self.counts.misses += 1
        return default

    async def alookup(self, ns: AsyncEntries, key: Hashable, default: Any = None) -> Any:
        """:meth:`lookup` for coroutines, read on the event loop (:meth:`aread`)."""
        entry, fresh = await self.aread(ns, key)
        if fresh:
            return entry[2]  # type: ignore[index]
        self.counts.misses += 1
        return default

    def peek(self, ns: Entries, key: Hashable, operation: str = "get") -> Entry | None:
        """The fresh entry of ``key`` or ``None``, uncounted (a read made to decide, such as
        Django's ``add`` or ``incr``); :data:`UNREADABLE` when the backend failed."""
        try:
            entry = ns.get_entry(key)
        except RejectedEntry as exc:
            self.reject(ns, key, str(exc))
            return None  # not ours: a miss, and replaced
        except Exception as exc:
            self.failed(operation, exc)
            return UNREADABLE
        if entry is None or not (entry[1] is None or entry[0] + entry[1] > time.time()):
            return None
        return entry

    def store_entry(
        self, ns: Entries, key: Hashable, value: Any, ttl: float | None, *, replacing: bool = False,
        lease: Lease | None = None,
    ) -> bool:
        """Store ``value``. ``replacing``: the stored value must not survive a failed write (a
        refresh), so the entry is then removed, or that removal retried (:meth:`remove`).
        ``lease``: the one the computation of ``value`` took (:meth:`Backend.lease`); a store the
        backend refuses with it (the key was deleted since) is counted as ``voided``, not an error."""
        if replacing:
            self.marks.note(ns.namespace, key)  # a computation under way must not overwrite it
        try:
            if lease is None:
                self._timed(ns.set_entry, key, make_entry(value, ttl))
            elif not self._timed(ns.set_entry_leased, key, make_entry(value, ttl), lease):
                self.counts.voided += 1
                return False
            self.counts.sets += 1
            return True
        except Exception as exc:
            if replacing:  # first, even when the failure is raised (raise_errors)
                self.remove(ns, key, reraise=False)
            self.failed("set", exc)
        return False

    def put(self, ns: Entries, key: Hashable, entry: Entry, operation: str = "set") -> bool:
        """Store ``entry`` as it is; ``False`` when that failed. A value that cannot be stored at
        all (:class:`~regions.errors.UnstorableValue`) raises, whatever the policy."""
        try:
            self._timed(ns.set_entry, key, entry)
        except UnstorableValue:
            raise
        except Exception as exc:
            self.failed(operation, exc)
            return False
        self.counts.sets += 1
        return True

    def remove(self, ns: Entries, key: Hashable, *, reraise: bool = True) -> bool:
        """Delete an entry; ``False`` when that did not reach the backend (retried where it can be)."""
        self.marks.note(ns.namespace, key)
        try:
            self._timed(ns.delete_entry, key)
            return True
        except Exception as exc:
            self.failed("delete", exc, reraise=reraise)
            return False

    # batches: one backend call for many keys (memcached: one round trip per server) -------------
    def read_many(self, ns: Backend, keys: Sequence[Hashable]) -> dict[Hashable, Entry]:
        """The fresh entries of ``keys`` (Django's ``get_many``): each found counts as a hit, each
        other key as a miss. A failure is counted once (its keys are misses), an entry not ours is
        rejected as :meth:`read` does."""
        stats = self.counts
        try:
            found, failure = self._timed(ns.get_entries, keys)
        except Exception as exc:  # a backend's own get_entries that raised as a whole
            found, failure = {}, exc
        if failure is not None:
            self.failed("get_many", failure)
        fresh: dict[Hashable, Entry] = {}
        now = time.time()
        for key, entry in found.items():
            if isinstance(entry, RejectedEntry):
                self.reject(ns, key, str(entry))
                continue
            try:
                if type(entry) is not tuple or len(entry) != 3 or type(entry[0]) is not float:
                    raise TypeError
                ttl = entry[1]
                if ttl is None or entry[0] + ttl > now:
                    fresh[key] = entry
            except TypeError:
                self.reject(ns, key, f"a malformed entry ({type(entry).__name__})")
        stats.hits += len(fresh)
        stats.misses += len(keys) - len(fresh)
        return fresh

    def put_many(
        self, ns: Backend, entries: Mapping[Hashable, Entry], operation: str = "set_many"
    ) -> list[Hashable]:
        """Store each entry as it is (:meth:`put` of each, in one backend call): the keys not stored.
        A value that cannot be stored at all raises, whatever the policy."""
        try:
            failed, failure = self._timed(ns.set_entries, entries)
        except UnstorableValue:
            raise
        except Exception as exc:
            failed, failure = list(entries), exc
        if failure is not None:
            self.failed(operation, failure)
        self.counts.sets += len(entries) - len(failed)
        return failed

    def remove_many(self, ns: Backend, keys: Sequence[Hashable]) -> list[Hashable]:
        """:meth:`remove` of each key in one backend call: the keys whose delete did not reach the
        backend (retried where it can be)."""
        note = self.marks.note
        for key in keys:
            note(ns.namespace, key)
        try:
            failed, failure = self._timed(ns.delete_entries, keys)
        except Exception as exc:
            failed, failure = list(keys), exc
        if failure is not None:
            self.failed("delete_many", failure)
        return failed

    def remove_all(self, ns: Backend, operation: str = "invalidate_all") -> bool:
        """Delete every entry of namespace ``ns``; ``False`` when that did not reach the backend (a
        memcached region retries it before it serves reads from that server again)."""
        self.marks.note(ns.namespace)
        try:
            self._timed(ns.do_remove)
            return True
        except Exception as exc:
            self.failed(operation, exc)
            return False

    @contextmanager
    def locked(self, ns: Backend, key: Hashable) -> Iterator[None]:
        """Hold ``key``'s lock for a read-modify-write: the in-process lock, then the backend's
        cross-process one. A lock the backend cannot take is skipped: whatever this process then
        writes cannot reach that backend either.

        Every wait ends: the cross-process lock is waited for ``lock_timeout`` at most (a holder that
        died frees it when it expires; past that, the body runs without it, as before), and so is
        the in-process one. When another thread of this process keeps the in-process lock longer
        than ``lock_timeout``, this call counts a lock timeout and raises
        :class:`~regions.errors.LockTimeout` naming the region, the key and ``lock_timeout``, whatever
        ``raise_errors`` says: there is no safe way on. Running the body without the lock lets two
        ``incr`` read the same count and one increment be lost, or two ``add`` both succeed; and
        unlike a missing key (Django's ``ValueError``, which callers often answer with
        ``set(key, 1)``), it must not reset a counter. A forked child gets new in-process locks
        (:data:`~regions.locks.UPDATE_LOCKS`): a lock held by a parent's thread at fork time is
        not held there."""
        local = UPDATE_LOCKS.get(("regions.update", id(ns), key))  # kept while held: see KeyLocks.get
        if not local.lock.acquire(timeout=self.lock_timeout):
            self.counts.lock_timeouts += 1
            raise LockTimeout(
                f"cache region {self.name!r}: the lock of key {key!r} stayed held by another thread of "
                f"this process for lock_timeout={self.lock_timeout:g} s; the read-modify-write was not made"
            )
        shared: SharedLock | None = None
        try:
            try:
                lock = ns.update_lock(key)
                if lock is not None and lock.acquire(self.lock_timeout):
                    shared = lock
            except Exception as exc:
                self.failed("lock", exc, reraise=False)
            yield
        finally:
            try:
                if shared is not None:
                    shared.release()
            except Exception as exc:  # an unreachable server: its lock key expires by itself
                self.failed("unlock", exc, reraise=False)
            finally:
                local.lock.release()

    async def call_io(self, call: Callable[..., T], *args: Any) -> T:
        """Run a blocking call of this region's backend on its I/O threads (in-process regions: on
        the event loop, no thread hop)."""
        return await self.engine.call_io(call, *args)

    def get_or_create_in(self, ns: Entries, key: Hashable, creator: Callable[[], T], ttl: float | None) -> T:
        """:meth:`get_or_create` in namespace ``ns`` (the compute-once protocol)."""
        return self.engine.get_or_create(ns, key, creator, ttl)

    async def aget_or_create_in(
        self, ns: Entries, key: Hashable, creator: Callable[[], Awaitable[T]], ttl: float | None
    ) -> T:
        """:meth:`get_or_create_in` for coroutine functions."""
        return await self.engine.aget_or_create(ns, key, creator, ttl)

    # direct API -----------------------------------------------------------------------------
    def _direct_key(self, key: Any) -> tuple[Backend, Hashable]:
        text = keys.encode_argument(f"region {self.name!r}", "key", key)
        return self.namespace(DIRECT), text

    def get(self, key: Any, default: Any = None) -> Any:
        """The value stored under ``key``, or ``default``."""
        ns, k = self._direct_key(key)
        return self.lookup(ns, k, default)

    def set(self, key: Any, value: Any, timeout: Any = DEFAULT) -> None:
        """Store ``value`` under ``key`` for ``timeout`` seconds (region default; ``None``: forever)."""
        ns, k = self._direct_key(key)
        self.store_entry(ns, k, value, self.ttl(timeout))

    def delete(self, key: Any) -> bool:
        """Delete ``key``; ``False`` when the backend could not be reached (the delete is retried)."""
        ns, k = self._direct_key(key)
        return self.remove(ns, k)

    def get_or_create(self, key: Any, creator: Callable[[], T], timeout: Any = DEFAULT) -> T:
        """The value under ``key``; computed once by ``creator()`` when missing (:mod:`regions.engine`)."""
        ns, k = self._direct_key(key)
        return self.engine.get_or_create(ns, k, creator, self.ttl(timeout))

    def clear(self) -> bool:
        """Drop every entry of this region (and nothing else on a shared server or folder).

        ``False`` when the backend could not be reached; a memcached region then retries the clear
        before it serves any read from that server again.
        """
        self.marks.note()
        try:
            self._timed(self.store.clear)
            return True
        except Exception as exc:
            self.failed("clear", exc)
            return False

    def stats(self) -> dict[str, Any]:
        """Hits, misses, errors, sets, hit rate, time spent in the backend and mean latency."""
        return {**self.counts.as_dict(), **self.store.extra_stats()}

    def counters(self) -> dict[str, Any]:
        """This process's raw counters (:data:`COUNTERS`), for exporters that sum or rate them."""
        counts = self.counts
        return {name: getattr(counts, name) for name in COUNTERS}

    def reset_stats(self) -> None:
        Stats.__init__(self.counts)  # in place: decorated functions hold this object

    def ping(self) -> bool:
        """Whether the backend answers now."""
        try:
            return self.store.ping()
        except Exception:
            return False

    def count(self) -> int | None:
        """Number of entries, where the backend can count them."""
        try:
            return self.store.count()
        except Exception:
            return None

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "backend": self.backend,
            "location": self.location,
            "timeout": self.timeout,
            "key_prefix": self.key_prefix,
            "version": self.version,
        }

    def close(self) -> None:
        self.store.close()

