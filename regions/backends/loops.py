"""One object per event loop, for a backend's reads on the loop (:class:`~.contract.AsyncEntries`):
a loop never uses another loop's connections. Made on a loop's first use, dropped once its loop is
closed, refused in a forked child (the parent's sockets are not its own)."""

from __future__ import annotations

import asyncio
import os
import threading
from typing import Any, Generic, TypeVar

P = TypeVar("P")


class PerLoop(Generic[P]):
    """The running loop's ``P`` (:meth:`pool`). Subclasses say how one is made (:meth:`make`), what
    a closed loop's leaves behind (:meth:`dropped`) and how one closes on its loop (:meth:`closer`)."""

    #: Named in the error of a forked child that uses its parent's connections.
    backend = "a backend"

    def __init__(self) -> None:
        self.pid = os.getpid()
        self._pools: dict[asyncio.AbstractEventLoop, P] = {}
        self._lock = threading.Lock()
        #: ``(loop, pool)`` of the last caller: one loop per process is the common case.
        self._last: tuple[Any, P | None] = (None, None)

    def make(self, loop: asyncio.AbstractEventLoop) -> P:
        raise NotImplementedError

    def dropped(self, pool: P) -> None:
        """``pool``'s loop is closed: it is forgotten (and this frees what it holds, if anything)."""

    def closer(self, pool: P) -> Any:
        """What closes ``pool``'s idle connections, run on its loop."""
        raise NotImplementedError

    def pool(self) -> P:
        """The running loop's pool."""
        loop = asyncio.get_running_loop()
        last = self._last
        return last[1] if last[0] is loop else self._pool(loop)  # type: ignore[return-value]

    def _pool(self, loop: asyncio.AbstractEventLoop) -> P:
        if self.pid != os.getpid():
            raise RuntimeError(f"{self.backend}: a forked child used its parent's connections")
        with self._lock:
            pool = self._pools.get(loop)
            if pool is None:
                for other in [other for other in self._pools if other.is_closed()]:
                    self.dropped(self._pools.pop(other))  # (a closed loop reads them no more)
                pool = self._pools[loop] = self.make(loop)
            self._last = (loop, pool)
            return pool

    def loops(self) -> int:
        """How many open loops have a pool here."""
        with self._lock:
            return sum(1 for loop in self._pools if not loop.is_closed())

    def close(self) -> None:
        """Close every open loop's idle connections, each on its own loop."""
        with self._lock:
            pools, self._pools = list(self._pools.items()), {}
            self._last = (None, None)
        try:
            running: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        for loop, pool in pools:
            if loop.is_closed():
                continue
            if running is loop:
                self.closer(pool)()
            else:
                try:
                    loop.call_soon_threadsafe(self.closer(pool))
                except RuntimeError:
                    pass  # closed meanwhile
