"""A configured region: its store, statistics, error policy and the get-or-create protocol."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Awaitable, Callable, Hashable
from typing import Any, TypeVar

from . import keys
from .api import Backend, Entry, Store, is_fresh, is_servable, make_entry

log = logging.getLogger("regions")
T = TypeVar("T")


class _Default:
    def __repr__(self) -> str:
        return "DEFAULT"


#: "Use the region's TIMEOUT" (``None`` means "never expire").
DEFAULT: Any = _Default()

#: Namespace of keys set directly on a region (``region.set(...)``) is ``~<region name>``: module
#: names never start with ``~``, and two regions sharing a server never share direct keys.
DIRECT = "~"


class Stats:
    """Counters of one region. Plain integers: exact in one thread, approximate under contention."""

    __slots__ = ("hits", "misses", "errors", "sets", "calls", "time_spent")

    def __init__(self) -> None:
        self.hits = self.misses = self.errors = self.sets = self.calls = 0
        self.time_spent = 0.0

    def as_dict(self) -> dict[str, Any]:
        looked_up = self.hits + self.misses
        return {
            "hits": self.hits,
            "misses": self.misses,
            "errors": self.errors,
            "sets": self.sets,
            "hit_rate": self.hits / looked_up if looked_up else None,
            "time_spent": self.time_spent,
            "mean_latency": self.time_spent / self.calls if self.calls else None,
        }


class Region:
    """One named cache: a backend store, a default lifetime and the get-or-create protocol."""

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
        self.stats_ = Stats()
        self._namespaces: dict[str, Backend] = {}
        self._namespaces_lock = threading.Lock()
        self._inflight: dict[tuple[int, Backend, Hashable, Hashable], asyncio.Future[Any]] = {}

    def __repr__(self) -> str:
        return f"<Region {self.name!r} backend={self.backend!r} timeout={self.timeout!r}>"

    # namespaces and keys ---------------------------------------------------------------------
    def namespace_name(self, qualname: str) -> str:
        stem = f"v{self.version}:{qualname}"
        return f"{self.key_prefix}:{stem}" if self.key_prefix else stem

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
    def failed(self, operation: str, exc: BaseException) -> None:
        """Count and log a backend failure; re-raise it when the region's ``raise_errors`` is set."""
        self.stats_.errors += 1
        if self.raise_errors:
            raise exc
        log.warning(
            "cache region %r (%s): %s failed: %s: %s; using the function's own result",
            self.name,
            self.backend,
            operation,
            type(exc).__name__,
            exc,
        )

    def _timed(self, call: Callable[..., T], *args: Any) -> T:
        if not self.store.timed:
            return call(*args)
        start = time.perf_counter()
        try:
            return call(*args)
        finally:
            stats = self.stats_
            stats.time_spent += time.perf_counter() - start
            stats.calls += 1

    def read(self, ns: Backend, key: Hashable) -> tuple[Entry | None, bool]:
        """The stored entry (``None`` on a miss or a backend failure) and whether it is fresh.

        A fresh entry counts as a hit. This is every decorated call's path, so the timing of
        :meth:`_timed` is written out here rather than called.
        """
        stats = self.stats_
        try:
            if self.store.timed:
                start = time.perf_counter()
                entry = ns.get_entry(key)
                stats.time_spent += time.perf_counter() - start
                stats.calls += 1
            else:
                entry = ns.get_entry(key)
        except Exception as exc:
            self.failed("get", exc)
            return None, False
        if entry is not None and is_fresh(entry, time.time()):
            stats.hits += 1
            return entry, True
        return entry, False

    def store_entry(self, ns: Backend, key: Hashable, value: Any, ttl: float | None) -> None:
        try:
            self._timed(ns.set_entry, key, make_entry(value, ttl))
            self.stats_.sets += 1
        except Exception as exc:
            self.failed("set", exc)

    def remove(self, ns: Backend, key: Hashable) -> None:
        try:
            self._timed(ns.delete_entry, key)
        except Exception as exc:
            self.failed("delete", exc)

    # get-or-create -------------------------------------------------------------------------
    def fill(
        self, ns: Backend, key: Hashable, entry: Entry | None, creator: Callable[[], T], ttl: float | None
    ) -> T:
        """After a miss (``entry`` is ``None`` or expired): compute once, serve stale while computing.

        One caller per key takes the creation lock and computes; others get the expired value if it
        is within ``stale`` seconds, or wait for the computation and read its result.
        """
        if not self.store.active:
            return creator()
        stats = self.stats_
        servable = entry is not None and is_servable(entry, time.time(), self.stale)
        try:
            lock = ns.get_creation_lock(key)
            got = lock.acquire(False)
        except Exception as exc:
            self.failed("lock", exc)
            stats.misses += 1
            return self._create(ns, key, creator, ttl)
        if not got:
            if servable:
                stats.hits += 1
                return entry[2]  # type: ignore[index]
            lock.acquire(True)  # another caller computes: wait for it, then read its result
            try:
                entry, fresh = self.read(ns, key)
                if fresh:
                    return entry[2]  # type: ignore[index]
                stats.misses += 1
                return self._create(ns, key, creator, ttl)
            finally:
                lock.release()
        try:
            stats.misses += 1
            return self._create(ns, key, creator, ttl)
        finally:
            lock.release()

    def _create(self, ns: Backend, key: Hashable, creator: Callable[[], T], ttl: float | None) -> T:
        value = creator()
        self.store_entry(ns, key, value, ttl)
        return value

    async def afill(
        self,
        ns: Backend,
        key: Hashable,
        entry: Entry | None,
        creator: Callable[[], Awaitable[T]],
        ttl: float | None,
    ) -> T:
        """:meth:`fill` for coroutines: concurrent misses of one key in one event loop await one task."""
        if not self.store.active:
            return await creator()
        stats = self.stats_
        loop = asyncio.get_running_loop()
        token = (id(loop), ns, ns.storage_token(), key)
        running = self._inflight.get(token)
        if running is not None:
            if entry is not None and is_servable(entry, time.time(), self.stale):
                stats.hits += 1
                return entry[2]
            stats.hits += 1
            return await asyncio.shield(running)
        future: asyncio.Future[Any] = loop.create_future()
        self._inflight[token] = future
        stats.misses += 1
        try:
            value = await creator()
        except BaseException as exc:
            if isinstance(exc, asyncio.CancelledError):
                future.cancel()
            else:
                future.set_exception(exc)
                future.exception()  # mark retrieved: waiters re-raise it, nobody else must
            raise
        else:
            self.store_entry(ns, key, value, ttl)
            future.set_result(value)
            return value
        finally:
            if self._inflight.get(token) is future:
                del self._inflight[token]

    # direct API -----------------------------------------------------------------------------
    def _direct_key(self, key: Any) -> tuple[Backend, Hashable]:
        text = keys.encode_argument(f"region {self.name!r}", "key", key)
        return self.namespace(DIRECT + self.name), text

    def get(self, key: Any, default: Any = None) -> Any:
        """The value stored under ``key``, or ``default``."""
        ns, k = self._direct_key(key)
        entry, fresh = self.read(ns, k)
        if fresh:
            return entry[2]  # type: ignore[index]
        self.stats_.misses += 1
        return default

    def set(self, key: Any, value: Any, timeout: Any = DEFAULT) -> None:
        """Store ``value`` under ``key`` for ``timeout`` seconds (region default; ``None``: forever)."""
        ns, k = self._direct_key(key)
        self.store_entry(ns, k, value, self.ttl(timeout))

    def delete(self, key: Any) -> None:
        ns, k = self._direct_key(key)
        self.remove(ns, k)

    def get_or_create(self, key: Any, creator: Callable[[], T], timeout: Any = DEFAULT) -> T:
        """The value under ``key``; computed by ``creator()`` once (under the creation lock) when missing."""
        ns, k = self._direct_key(key)
        entry, fresh = self.read(ns, k)
        if fresh:
            return entry[2]  # type: ignore[index]
        return self.fill(ns, k, entry, creator, self.ttl(timeout))

    def clear(self) -> None:
        """Drop every entry of this region (and nothing else on a shared server or folder)."""
        try:
            self._timed(self.store.clear)
        except Exception as exc:
            self.failed("clear", exc)

    def stats(self) -> dict[str, Any]:
        """Hits, misses, errors, sets, hit rate, time spent in the backend and mean latency."""
        return self.stats_.as_dict()

    def reset_stats(self) -> None:
        self.stats_.__init__()  # in place: decorated functions hold this object

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
