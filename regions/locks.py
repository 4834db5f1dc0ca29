"""Creation locks: the cross-process :class:`SharedLock` contract, the polling wait every backend's
lock uses, and :class:`BeakerLock`, the creation lock Beaker's ``Value`` takes (the in-process
``NameLock`` of a key, then the backend's shared lock)."""

from __future__ import annotations

import time
from collections.abc import Callable
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
