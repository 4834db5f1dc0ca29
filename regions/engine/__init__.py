"""Compute-once: who computes a missing value, and what every other caller does meanwhile.

One protocol for threads and coroutines, per region (:mod:`.protocol`, written once, without I/O):

1. **Read** the entry (one backend round trip). Fresh: a hit.
2. **Join or lead** the in-process *flight* of that key (:mod:`.flights`: one per storage,
   namespace and key). A caller that finds a flight serves the expired value if it is within
   ``stale`` seconds, else waits for the flight's result until ``lock_timeout``; past that deadline
   it computes by itself (``stats()["lock_timeouts"]``). A caller that finds none leads.
3. The leader **re-reads** when another caller may have stored the key since its own read (a flight
   of this region finished meanwhile, or the backend is shared with other processes), takes the
   backend's cross-process :meth:`~regions.backends.contract.Backend.shared_lock` with the same
   deadline (or serves the stale value when another process holds it), re-reads once more,
   **computes**, **stores** (unless an invalidation of its key, its namespace or the region noted
   meanwhile may have made the value obsolete: :mod:`.marks`; on shared storage, the lease taken
   before computing makes the backend refuse the store when another process deleted the key
   meanwhile: ``stats()["voided"]``), and hands the value (or the
   exception) to every caller that joined.

:mod:`.sync` drives the steps in the calling thread, :mod:`.aio` in coroutines. The decorator's
inline hit path (:mod:`regions.decorator`) is step 1 written out for speed.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Hashable
from typing import TYPE_CHECKING, Any

from ..backends.contract import Entries, Lease, SharedLock
from ..errors import BackendUnavailable
from . import aio, sync
from .protocol import ACQUIRE, LEASE, LOCK, READ, Call, Op

if TYPE_CHECKING:
    from ..region import Region

__all__ = ["Engine"]


class Engine:
    """The compute-once protocol of one region, for threads and coroutines."""

    def __init__(self, region: Region) -> None:
        self.region = region
        self.storage = region.store.storage_id()

    get_or_create = sync.get_or_create
    fill = sync.fill
    aget_or_create = aio.aget_or_create
    afill = aio.fill
    call_io = aio.call_io

    # the backend's cross-process lock, under the region's failure policy ----------------------
    def operation(self, call: Call, op: Op) -> tuple[Callable[..., Any], tuple[Any, ...]]:
        """The backend call, and its arguments, that performs ``op`` of ``call`` (READ, LOCK, one try
        of ACQUIRE, LEASE or STORE): the same for both runners, which differ only in how they make
        it (in this thread, or on the store's I/O threads)."""
        kind = op[0]
        if kind == READ:
            return self.region.read, (call.ns, call.key)
        if kind == LOCK:
            return self.shared_lock, (call.ns, call.key)
        if kind == ACQUIRE:
            return self.try_lock, (call.shared, 0)
        if kind == LEASE:
            return self.lease, (call.ns, call.key)
        return functools.partial(self.region.store_entry, lease=op[2]), (call.ns, call.key, op[1], call.ttl)

    def shared_lock(self, ns: Entries, key: Hashable) -> SharedLock | None:
        try:
            return ns.shared_lock(key)
        except Exception as exc:
            self.region.failed("lock", exc)
            return None

    def lease(self, ns: Entries, key: Hashable) -> Lease | None:
        """The backend's lease of ``key``, or ``None`` (none, or it failed: the store is then a plain
        write, as without leases). A server marked down is not a new failure: not counted again."""
        try:
            return ns.lease(key)
        except BackendUnavailable:
            return None
        except Exception as exc:
            self.region.failed("lease", exc)
            return None

    def try_lock(self, lock: SharedLock, timeout: float) -> bool | None:
        """``True``: held; ``False``: another holder kept it past ``timeout``; ``None``: the lock
        itself failed (counted as an error, not as a lock timeout)."""
        try:
            return lock.acquire(timeout)
        except Exception as exc:
            self.region.failed("lock", exc)
            return None

    def unlock(self, lock: SharedLock) -> None:
        try:
            lock.release()
        except Exception as exc:
            self.region.failed("unlock", exc)
