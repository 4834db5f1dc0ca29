"""Django's cache framework over a region: ``CACHES = {"default": {"BACKEND":
"django_regions.cache.RegionCache", "LOCATION": "functions"}}``.

``LOCATION`` names a region of the process default manager (the one the app builds from
``CACHE_REGIONS``, or ``regions.configure(...)``); the region is looked up again after each
configure. Every entry goes through the region: its key guard, failure policy, signing and stats.

* Keys are Django's (``KEY_PREFIX``, ``VERSION``, ``KEY_FUNCTION``), in a namespace of the region
  per ``KEY_PREFIX``: aliases over one region with one prefix share entries, as on Django's own
  backends; ``clear()`` drops that namespace only (never a ``flush_all``, never the region's
  function entries).
* ``TIMEOUT`` defaults to the region's ``TIMEOUT`` (Django's 300 s only when the alias sets it).
* ``add``, ``incr``, ``decr`` and ``touch`` read and write under the key's lock: the in-process lock
  and the backend's cross-process one (a memcached ``add`` lock, a file lock), each waited for
  ``lock_timeout`` at most. An in-process lock kept longer by another thread raises
  :class:`regions.errors.LockTimeout` (:meth:`regions.region.Region.locked` says why).
* In-process regions (memory, request, synced, tiered) keep each value pickled, as Django's
  ``locmem`` does: a value mutated after ``set`` is not changed in the cache, and an unpicklable
  one raises :class:`pickle.PickleError` on every region type.
* Failures follow the region's policy: a read is a miss, a write is dropped (``set_many`` lists
  its key), ``add``/``touch``/``delete`` return ``False``, ``incr`` on a key it cannot read raises
  ``ValueError`` as for a missing key; with ``OPTIONS raise_errors`` they raise instead.
"""

from __future__ import annotations

import pickle
import threading
from collections.abc import Callable, Hashable, Iterable
from typing import Any, TypeVar

from django.core.cache.backends.base import (
    DEFAULT_TIMEOUT,
    BaseCache,
    InvalidCacheBackendError,
    memcache_key_warnings,
)

import regions
from regions import manager as _manager
from regions.backends.contract import Backend, make_entry
from regions.errors import UnknownRegion, UnstorableValue
from regions.region import UNREADABLE, Region

__all__ = ["RegionCache"]

_MISSING = object()
T = TypeVar("T")
#: Most text keys whose made key :meth:`RegionCache.make_and_validate_key` remembers (then it forgets all).
KEY_MEMO_SIZE = 4096


class RegionCache(BaseCache):
    """A Django cache backend whose ``LOCATION`` names a region."""

    def __init__(self, location: str, params: dict[str, Any]) -> None:
        super().__init__(params)
        if not isinstance(location, str) or not location:
            raise InvalidCacheBackendError(
                "django_regions.cache.RegionCache: LOCATION must name a region of CACHE_REGIONS, "
                f"got {location!r}"
            )
        self.region_name = location
        self._own_timeout = "TIMEOUT" in params
        prefix = self.key_prefix
        self._qualname = f"~django:{len(prefix)}:{prefix}"
        self._bound: tuple[int, Region, Backend, bool] | None = None
        self._bind_lock = threading.Lock()
        #: ``(key, version) -> make_and_validate_key(key, version)`` of recent ``str`` keys.
        self._made: dict[tuple[str, int | None], str] = {}
        # An unknown LOCATION is reported by `manage.py check` (E020) and raised at first use: Django's
        # own checks build every cache, so raising here would hide the report behind a traceback.

    # the region ---------------------------------------------------------------------------------
    def _binding(self) -> tuple[int, Region, Backend, bool]:
        bound, epoch = self._bound, _manager.epoch()
        if bound is None or bound[0] != epoch:
            with self._bind_lock:
                try:
                    region = regions.get_manager()[self.region_name]
                except UnknownRegion as exc:
                    raise InvalidCacheBackendError(
                        f"cache LOCATION {self.region_name!r}: {exc}; set LOCATION to one of them"
                    ) from exc
                copies = not type(region.store).signs  # in-process: values kept pickled
                bound = self._bound = (epoch, region, region.namespace(self._qualname), copies)
        return bound

    @property
    def region(self) -> Region:
        """The region this alias stores in (the current one after a configure)."""
        return self._binding()[1]

    def _ttl(self, timeout: Any) -> float | None:
        """Seconds to keep an entry; ``None``: forever; ``<= 0``: not kept."""
        if timeout is DEFAULT_TIMEOUT:
            return self.default_timeout if self._own_timeout else self.region.timeout
        return None if timeout is None else float(timeout)

    def _read(self, region: Region, ns: Backend, key: str) -> Any:
        """The fresh stored value (still pickled for in-process regions), else ``_MISSING``;
        uncounted: ``get`` counts hits and misses, the other operations only read to decide."""
        entry = region.peek(ns, key)
        return _MISSING if entry is None or entry is UNREADABLE else entry[2]

    # values ------------------------------------------------------------------------------------
    def _encode(self, copies: bool, value: Any) -> Any:
        if not copies:
            return value
        try:
            return pickle.dumps(value, pickle.HIGHEST_PROTOCOL)
        except Exception as exc:
            raise UnstorableValue(self.region_name, value, exc) from exc

    @staticmethod
    def _decode(copies: bool, stored: Any) -> Any:
        return pickle.loads(stored) if copies else stored

    def make_and_validate_key(self, key: Any, version: int | None = None) -> str:
        """Django's, remembered for a text key whose made key draws no warning: a hit then skips
        ``KEY_FUNCTION`` and the key scan (about 2 us of a 60 us Redis hit). A key that warns is
        made and checked every time, so it warns every time, as on Django's backends."""
        if type(key) is str:
            made = self._made.get((key, version))
            if made is not None:
                return made
        made = self.make_key(key, version=version)
        self.validate_key(made)
        if type(key) is str and type(made) is str and next(memcache_key_warnings(made), None) is None:
            if len(self._made) >= KEY_MEMO_SIZE:
                self._made.clear()
            self._made[key, version] = made
        return made

    # Django's API -----------------------------------------------------------------------------
    def get(self, key: Any, default: Any = None, version: int | None = None) -> Any:
        _, region, ns, copies = self._binding()
        made = self._made.get((key, version)) if type(key) is str else None  # (the memo, inline)
        if made is None:
            made = self.make_and_validate_key(key, version=version)
        stored = region.lookup(ns, made, _MISSING)
        return default if stored is _MISSING else self._decode(copies, stored)

    def set(self, key: Any, value: Any, timeout: Any = DEFAULT_TIMEOUT, version: int | None = None) -> None:
        self._set(self.make_and_validate_key(key, version=version), value, timeout)

    def _set(self, key: str, value: Any, timeout: Any) -> bool:
        _, region, ns, copies = self._binding()
        ttl = self._ttl(timeout)
        stored = self._encode(copies, value)  # before anything: an unpicklable value always raises
        if ttl is not None and ttl <= 0:
            return region.remove(ns, key)
        return region.put(ns, key, make_entry(stored, ttl))

    def add(self, key: Any, value: Any, timeout: Any = DEFAULT_TIMEOUT, version: int | None = None) -> bool:
        key = self.make_and_validate_key(key, version=version)
        _, region, ns, copies = self._binding()
        ttl = self._ttl(timeout)
        stored = self._encode(copies, value)
        with region.locked(ns, key):
            present = region.peek(ns, key, "add")
            if present is not None:  # fresh, or UNREADABLE: never overwrite what may be there
                return False
            if ttl is not None and ttl <= 0:
                return True  # added, and expired at once (Django's backends do the same)
            return region.put(ns, key, make_entry(stored, ttl))

    def touch(self, key: Any, timeout: Any = DEFAULT_TIMEOUT, version: int | None = None) -> bool:
        key = self.make_and_validate_key(key, version=version)
        _, region, ns, _copies = self._binding()
        ttl = self._ttl(timeout)
        with region.locked(ns, key):
            stored = self._read(region, ns, key)
            if stored is _MISSING:
                return False
            if ttl is not None and ttl <= 0:
                return region.remove(ns, key)
            return region.put(ns, key, make_entry(stored, ttl))

    def delete(self, key: Any, version: int | None = None) -> bool:
        key = self.make_and_validate_key(key, version=version)
        _, region, ns, _copies = self._binding()
        existed = self._read(region, ns, key) is not _MISSING
        return region.remove(ns, key) and existed

    def has_key(self, key: Any, version: int | None = None) -> bool:
        key = self.make_and_validate_key(key, version=version)
        _, region, ns, _copies = self._binding()
        return self._read(region, ns, key) is not _MISSING

    def incr(self, key: Any, delta: int = 1, version: int | None = None) -> Any:
        key = self.make_and_validate_key(key, version=version)
        _, region, ns, copies = self._binding()
        with region.locked(ns, key):
            entry = region.peek(ns, key, "incr")
            if entry is None or entry is UNREADABLE:
                raise ValueError(f"Key '{key}' not found")
            value = self._decode(copies, entry[2]) + delta
            if not region.put(ns, key, (entry[0], entry[1], self._encode(copies, value)), "incr"):
                region.remove(ns, key, reraise=False)  # never leave the old count to be read again
        return value

    def get_many(self, keys: Iterable[Any], version: int | None = None) -> dict[Any, Any]:
        """One backend call for all keys (memcached: one round trip per server)."""
        _, region, ns, copies = self._binding()
        wanted: dict[Hashable, Any] = {self.make_and_validate_key(key, version=version): key for key in keys}
        found = region.read_many(ns, list(wanted))
        return {wanted[k]: self._decode(copies, entry[2]) for k, entry in found.items()}

    def set_many(
        self, data: dict[Any, Any], timeout: Any = DEFAULT_TIMEOUT, version: int | None = None
    ) -> list[Any]:
        """One backend call for all keys (memcached: one pipelined ``set`` per server); returns the
        keys that could not be stored, as Django's backends do."""
        _, region, ns, copies = self._binding()
        ttl = self._ttl(timeout)
        # every value encoded first: an unpicklable one raises before anything is stored
        entries: dict[Hashable, tuple[Any, Any]] = {
            self.make_and_validate_key(key, version=version): (key, self._encode(copies, value))
            for key, value in data.items()
        }
        if ttl is not None and ttl <= 0:
            failed = region.remove_many(ns, list(entries))
        else:
            failed = region.put_many(ns, {k: make_entry(v, ttl) for k, (_, v) in entries.items()})
        return [entries[k][0] for k in failed]

    def delete_many(self, keys: Iterable[Any], version: int | None = None) -> None:
        """One backend call for all keys (memcached: pipelined ``delete ... noreply`` and ``mn``)."""
        _, region, ns, _copies = self._binding()
        region.remove_many(ns, [self.make_and_validate_key(key, version=version) for key in keys])

    def clear(self) -> None:
        """Drop the entries of this alias's ``KEY_PREFIX`` in the region (other prefixes, the
        region's function entries and anything else on the server stay)."""
        _, region, ns, _copies = self._binding()
        region.remove_all(ns, "clear")

    def close(self, **kwargs: Any) -> None:
        """Nothing to do: the region's connections are pooled and outlive requests."""

    # async: on the region's I/O threads (in-process regions: on the event loop, no thread hop;
    # aget of a backend that reads on the loop, memcached and Redis: there too). Django's defaults
    # run every cache call of every request on one thread (thread_sensitive).
    async def _io(self, call: Callable[..., T], *args: Any) -> T:
        return await self.region.call_io(call, *args)

    async def aget(self, key: Any, default: Any = None, version: int | None = None) -> Any:
        _, region, ns, copies = self._binding()
        if not hasattr(ns, "aget_entry"):  # no read on the event loop (AsyncEntries): a thread
            return await self._io(self.get, key, default, version)
        stored = await region.alookup(ns, self.make_and_validate_key(key, version=version), _MISSING)
        return default if stored is _MISSING else self._decode(copies, stored)

    async def aset(
        self, key: Any, value: Any, timeout: Any = DEFAULT_TIMEOUT, version: int | None = None
    ) -> None:
        await self._io(self.set, key, value, timeout, version)

    async def aadd(
        self, key: Any, value: Any, timeout: Any = DEFAULT_TIMEOUT, version: int | None = None
    ) -> bool:
        return await self._io(self.add, key, value, timeout, version)

    async def atouch(self, key: Any, timeout: Any = DEFAULT_TIMEOUT, version: int | None = None) -> bool:
        return await self._io(self.touch, key, timeout, version)

    async def adelete(self, key: Any, version: int | None = None) -> bool:
        return await self._io(self.delete, key, version)

    async def ahas_key(self, key: Any, version: int | None = None) -> bool:
        return await self._io(self.has_key, key, version)

    async def aincr(self, key: Any, delta: int = 1, version: int | None = None) -> Any:
        return await self._io(self.incr, key, delta, version)

    async def aget_many(self, keys: Iterable[Any], version: int | None = None) -> dict[Any, Any]:
        return await self._io(self.get_many, keys, version)

    async def aset_many(
        self, data: dict[Any, Any], timeout: Any = DEFAULT_TIMEOUT, version: int | None = None
    ) -> list[Any]:
        return await self._io(self.set_many, data, timeout, version)

    async def adelete_many(self, keys: Iterable[Any], version: int | None = None) -> None:
        await self._io(self.delete_many, keys, version)

    async def aclear(self) -> None:
        await self._io(self.clear)

