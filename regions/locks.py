"""Creation locks: the cross-process :class:`SharedLock` contract, the polling wait every backend's
lock uses, :class:`BeakerLock`, the creation lock Beaker's ``Value`` takes (the in-process
``NameLock`` of a key, then the backend's shared lock), and :data:`UPDATE_LOCKS`, the in-process
locks of read-modify-writes (:meth:`regions.region.Region.locked`)."""

from __future__ import annotations

import os
import threading
import time
import weakref
from collections.abc import Callable, Hashable
from typing import Protocol

from beaker.synchronization import NameLock


def poll(attempt: Callable[[], bool], timeout: float, first: float, most: float) -> bool:
    """Call ``attempt()`` until it returns ``True`` or ``timeout`` seconds pass (0: once), sleeping
    ``first`` seconds after the first failure and twice as long after each next one, up to ``most``.
    The wait of every :class:`SharedLock` that polls."""
    deadline = time.monotonic() + timeout
    pause = first
    while not attempt():
        left = deadline - time.monotonic()
        if left <= 0:
            return False
        time.sleep(min(pause, left))
        pause = min(pause * 2, most)
    return True


class SharedLock(Protocol):
    """A creation lock held across processes (and hosts, for memcached).

    The engine takes it only after winning the in-process lock for the same key, so one thread per
    process at most waits for it. ``acquire(0)`` tries once; every wait ends by ``timeout``.
    """

    def acquire(self, timeout: float) -> bool: ...
    def release(self) -> None: ...



class BeakerLock:
    """``acquire(wait=True)`` / ``release()`` as Beaker's ``Value`` expects, over the two locks."""

    def __init__(self, local: NameLock, shared: SharedLock | None, timeout: float) -> None:
        self.local, self.shared, self.timeout = local, shared, timeout
        self.held_shared = False

    def acquire(self, wait: bool = True) -> bool:
        if not self.local.acquire(wait):
            return False
        if self.shared is not None:
            try:
                self.held_shared = self.shared.acquire(self.timeout if wait else 0)
            except BaseException:
                self.local.release()  # Beaker releases only what it acquired: never keep this one
                raise
            if not self.held_shared and not wait:
                self.local.release()
                return False
        return True

    def release(self) -> None:
        try:
            if self.held_shared and self.shared is not None:
                self.shared.release()
        finally:
            self.held_shared = False
            self.local.release()


class LocalKeyLock:
    """One in-process lock of a key, kept in :class:`KeyLocks` while someone refers to it."""

    __slots__ = ("lock", "__weakref__")

    def __init__(self) -> None:
        self.lock = threading.Lock()


class KeyLocks:
    """In-process locks by name, as Beaker's ``NameLock`` registry, but this package's own: a forked
    child gets new ones (:meth:`after_fork`), where Beaker's registry would hand it a lock held by a
    thread of the parent, which the child does not have and which never releases it there."""

    def __init__(self) -> None:
        self.locks: weakref.WeakValueDictionary[Hashable, LocalKeyLock] = weakref.WeakValueDictionary()
        self.mutex = threading.Lock()

    def get(self, name: Hashable) -> LocalKeyLock:
        """The lock of ``name``; keep the returned object while the lock is held (it stays in the
        registry only while referred to)."""
        with self.mutex:
            found = self.locks.get(name)
            if found is None:
                found = self.locks[name] = LocalKeyLock()
            return found

    def after_fork(self) -> None:
        """In a forked child: no lock of the parent's threads is held here."""
        self.locks = weakref.WeakValueDictionary()
        self.mutex = threading.Lock()


#: The locks of :meth:`regions.region.Region.locked` (Django's ``add``, ``incr``, ``touch``).
UPDATE_LOCKS = KeyLocks()
os.register_at_fork(after_in_child=UPDATE_LOCKS.after_fork)
