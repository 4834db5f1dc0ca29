"""Compute-once: who computes a missing value, and what every other caller does meanwhile.

One protocol for threads and coroutines, per region:

1. **Read** the entry (one backend round trip). Fresh: a hit.
2. **Join or lead** the in-process *flight* of that key (:mod:`regions.engine.flights`: one per
   storage, namespace and key). A caller that finds a flight serves the expired value if it is
   within ``stale`` seconds, else waits for the flight's result until ``lock_timeout``; past that
   deadline it computes by itself (``stats()["lock_timeouts"]``). A caller that finds none leads.
3. The leader **re-reads** when another caller may have stored the key since its own read (a flight
   of this region finished meanwhile, or the backend is shared with other processes), takes the
   backend's cross-process :meth:`~regions.backends.contract.Backend.shared_lock` with the same deadline (or
   serves the stale value when another process holds it), re-reads once more, **computes**,
   **stores** (unless this process invalidated something of the region meanwhile: the value may
   rest on replaced data), and hands the value (or the exception) to every caller that joined.

Coroutines follow the same steps. Their backend calls run on the store's I/O threads, never on the
event loop, and the computation runs in a task of its own: a caller cancelled while waiting leaves
the others waiting; the computation is cancelled only when no caller is left.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import time
from collections.abc import Awaitable, Callable, Hashable
from typing import TYPE_CHECKING, Any, TypeVar

from .. import trace as _trace
from ..backends.contract import Entry, SharedLock, is_servable
from .flights import FLIGHTS, Flight

if TYPE_CHECKING:
    from ..backends.contract import Backend
    from ..region import Region

T = TypeVar("T")
_monotonic = time.monotonic


class Engine:
    """The compute-once protocol of one region (see the module docstring)."""

    def __init__(self, region: Region) -> None:
        self.region = region
        self.storage = region.store.storage_id()

    def token(self, ns: Backend, key: Hashable) -> Hashable:
        return (self.storage, ns.namespace, ns.storage_token(), key)

    # shared steps ------------------------------------------------------------------------------
    def _servable(self, entry: Entry | None) -> bool:
        return entry is not None and is_servable(entry, time.time(), self.region.stale)

    def _shared_lock(self, ns: Backend, key: Hashable) -> SharedLock | None:
        try:
            return ns.shared_lock(key)
        except Exception as exc:
            self.region.failed("lock", exc)
            return None

    def _try_lock(self, lock: SharedLock, timeout: float) -> bool | None:
        """``True``: held; ``False``: another holder kept it past ``timeout``; ``None``: the lock
        itself failed (counted as an error, not as a lock timeout)."""
        try:
            return lock.acquire(timeout)
        except Exception as exc:
            self.region.failed("lock", exc)
            return None

    def _unlock(self, lock: SharedLock) -> None:
        try:
            lock.release()
        except Exception as exc:
            self.region.failed("unlock", exc)

    def _stale(self, entry: Entry) -> Any:
        stats = self.region.stats_
        stats.hits += 1
        stats.stale += 1
        if _trace.ON:
            _trace.stale()
        return entry[2]

    # threads -----------------------------------------------------------------------------------
    def get_or_create(self, ns: Backend, key: Hashable, creator: Callable[[], T], ttl: float | None) -> T:
        """The value of ``key``: read, then :meth:`fill` on a miss."""
        seq = FLIGHTS.completed
        entry, fresh = self.region.read(ns, key)
        if fresh:
            return entry[2]  # type: ignore[index]
        return self.fill(ns, key, entry, seq, creator, ttl)

    def fill(
        self,
        ns: Backend,
        key: Hashable,
        entry: Entry | None,
        seq: int,
        creator: Callable[[], T],
        ttl: float | None,
    ) -> T:
        """After a read at flight count ``seq`` found ``entry`` missing or expired."""
        region = self.region
        if not region.store.active:
            return creator()
        token = self.token(ns, key)
        deadline = _monotonic() + region.lock_timeout
        while True:
            stale_ok = self._servable(entry)
            flight, leads = FLIGHTS.join(token, stale_ok)
            if flight is None:
                return self._stale(entry)  # type: ignore[arg-type]
            if leads:
                return self._lead(flight, token, ns, key, entry, seq, creator, ttl, deadline)
            try:
                value = flight.future.result(max(0.0, deadline - _monotonic()))
            except concurrent.futures.TimeoutError:
                region.stats_.lock_timeouts += 1
                return self._compute(ns, key, creator, ttl)
            except concurrent.futures.CancelledError:
                continue  # its coroutine leader was cancelled with no caller left: start over
            finally:
                FLIGHTS.leave(flight)
            region.stats_.hits += 1
            return value

    def _compute(self, ns: Backend, key: Hashable, creator: Callable[[], T], ttl: float | None) -> T:
        region = self.region
        region.stats_.misses += 1
        mark = region.invalidations
        value = creator()
        if region.invalidations == mark:  # else it may rest on data an invalidation replaced
            region.store_entry(ns, key, value, ttl)
        return value

    def _lead(
        self,
        flight: Flight,
        token: Hashable,
        ns: Backend,
        key: Hashable,
        entry: Entry | None,
        seq: int,
        creator: Callable[[], T],
        ttl: float | None,
        deadline: float,
    ) -> T:
        region = self.region
        shared: SharedLock | None = None
        held = False
        try:
            if FLIGHTS.completed != seq or region.store.native_keys:
                entry, fresh = region.read(ns, key)  # stored by a flight that ended after our read?
                if fresh:
                    flight.future.set_result(entry[2])  # type: ignore[index]
                    return entry[2]  # type: ignore[index]
            shared = self._shared_lock(ns, key)
            if shared is not None:
                if self._servable(entry):
                    held = bool(self._try_lock(shared, 0))
                    if not held:  # another process computes: serve the expired value meanwhile
                        value = self._stale(entry)  # type: ignore[arg-type]
                        flight.future.set_result(value)
                        return value
                else:
                    got = self._try_lock(shared, max(0.0, deadline - _monotonic()))
                    if got is False:
                        region.stats_.lock_timeouts += 1
                    held = bool(got)
                entry, fresh = region.read(ns, key)
                if fresh:
                    flight.future.set_result(entry[2])  # type: ignore[index]
                    return entry[2]  # type: ignore[index]
            value = self._compute(ns, key, creator, ttl)
        except BaseException as exc:
            flight.future.set_exception(exc)
            raise
        finally:
            if held:
                self._unlock(shared)  # type: ignore[arg-type]
            FLIGHTS.land(token, flight)
        flight.future.set_result(value)
        return value

    # coroutines --------------------------------------------------------------------------------
    async def call_io(self, call: Callable[..., T], *args: Any) -> T:
        """Run a blocking backend call on the store's I/O threads (in-process stores: here)."""
        store = self.region.store
        if not store.io:
            return call(*args)
        if _trace.ON:  # the I/O thread's failures belong to the traced call
            call = _trace.carry(call)
        return await asyncio.get_running_loop().run_in_executor(store.executor, call, *args)

    async def aget_or_create(
        self, ns: Backend, key: Hashable, creator: Callable[[], Awaitable[T]], ttl: float | None
    ) -> T:
        """:meth:`get_or_create` for coroutine functions."""
        region = self.region
        if not region.store.active:
            return await creator()
        seq = FLIGHTS.completed
        entry, fresh = await self.call_io(region.read, ns, key)
        if fresh:
            return entry[2]  # type: ignore[index]
        token = self.token(ns, key)
        deadline = _monotonic() + region.lock_timeout
        while True:
            flight, leads = FLIGHTS.join(token, self._servable(entry))
            if flight is None:
                return self._stale(entry)  # type: ignore[arg-type]
            if leads:
                flight.task = asyncio.get_running_loop().create_task(
                    self._alead(flight, token, ns, key, entry, seq, creator, ttl, deadline)
                )
            waiting = asyncio.shield(asyncio.wrap_future(flight.future))
            try:
                value = await asyncio.wait_for(waiting, max(0.0, deadline - _monotonic()))
            except TimeoutError:
                FLIGHTS.leave(flight)
                region.stats_.lock_timeouts += 1
                return await self._acompute(ns, key, creator, ttl)
            except asyncio.CancelledError:
                left = FLIGHTS.leave(flight)
                task = asyncio.current_task()
                if flight.future.cancelled() and not (task and task.cancelling()):
                    continue  # the computation was cancelled, not this caller: start over
                if left == 0 and flight.task is not None:
                    flight.task.cancel()  # nobody waits for it any more
                raise
            except BaseException:
                FLIGHTS.leave(flight)
                raise
            FLIGHTS.leave(flight)
            if not leads:
                region.stats_.hits += 1
            return value

    async def _alead(
        self,
        flight: Flight,
        token: Hashable,
        ns: Backend,
        key: Hashable,
        entry: Entry | None,
        seq: int,
        creator: Callable[[], Awaitable[Any]],
        ttl: float | None,
        deadline: float,
    ) -> None:
        """The computation of a flight led by a coroutine: its outcome goes to ``flight.future``."""
        region = self.region
        shared: SharedLock | None = None
        held = False
        future = flight.future
        try:
            if FLIGHTS.completed != seq or region.store.native_keys:
                entry, fresh = await self.call_io(region.read, ns, key)
                if fresh:
                    future.set_result(entry[2])  # type: ignore[index]
                    return
            shared = await self.call_io(self._shared_lock, ns, key)
            if shared is not None:
                if self._servable(entry):
                    held = bool(await self.call_io(self._try_lock, shared, 0))
                    if not held:
                        future.set_result(self._stale(entry))  # type: ignore[arg-type]
                        return
                else:
                    got = await self._apoll(shared, deadline)
                    if got is False:
                        region.stats_.lock_timeouts += 1
                    held = bool(got)
                entry, fresh = await self.call_io(region.read, ns, key)
                if fresh:
                    future.set_result(entry[2])  # type: ignore[index]
                    return
            future.set_result(await self._acompute(ns, key, creator, ttl))
        except asyncio.CancelledError:
            future.cancel()
            raise
        except BaseException as exc:  # handed to the callers through the future
            future.set_exception(exc)
        finally:
            if held:
                self._release_later(shared)  # type: ignore[arg-type]
            FLIGHTS.land(token, flight)

    async def _acompute(
        self, ns: Backend, key: Hashable, creator: Callable[[], Awaitable[T]], ttl: float | None
    ) -> T:
        """:meth:`_compute` for coroutine functions (the store runs on the I/O threads)."""
        region = self.region
        region.stats_.misses += 1
        mark = region.invalidations
        value = await creator()
        if region.invalidations == mark:  # else it may rest on data an invalidation replaced
            await self.call_io(region.store_entry, ns, key, value, ttl)
        return value

    async def _apoll(self, lock: SharedLock, deadline: float) -> bool | None:
        """Wait for a shared lock without blocking the loop or holding an I/O thread for long."""
        pause = 0.005
        while True:
            got = await self.call_io(self._try_lock, lock, 0)
            if got is not False:
                return got
            left = deadline - _monotonic()
            if left <= 0:
                return False
            await asyncio.sleep(min(pause, left))
            pause = min(pause * 2, 0.1)

    def _release_later(self, lock: SharedLock) -> None:
        store = self.region.store
        if store.io:
            store.executor.submit(self._unlock, lock)
        else:
            self._unlock(lock)
