"""A bounded pool of connections to one server, shared by every thread of a process.

Threads come and go (Django's ASGI handler runs each request's sync code in a fresh thread;
``runserver`` starts one per request), so connections belong to the pool, not to threads: a call
takes an idle connection, uses it, and gives it back. At most ``max_size`` exist at once; a caller
finding none idle and the pool full waits until one is returned, for at most ``wait`` seconds.

Taking and returning an idle connection is a ``deque.pop`` / ``deque.append`` (atomic, no lock):
the lock is taken only to create a connection or to wait for one. The most recently used connection
is reused first. Idle connections stay in the pool (at most ``max_size``); :meth:`Pool.disconnect`
closes their sockets when the server is marked down, and they reconnect on next use.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from ...errors import PoolExhausted


class Pool:
    """Connections made by ``factory()``, at most ``max_size`` of them (see the module docstring)."""

    def __init__(self, factory: Callable[[], Any], max_size: int, wait: float, name: str = "") -> None:
        self.factory = factory
        self.max_size = max_size
        self.wait = wait
        self.name = name
        self.idle: deque[Any] = deque()
        self.made = 0
        self.waiting = 0
        self._cond = threading.Condition(threading.Lock())

    def acquire(self) -> Any:
        """An idle connection, a new one while under ``max_size``, else one returned within ``wait``."""
        try:
            return self.idle.pop()
        except IndexError:
            return self._acquire_slow()

    def _acquire_slow(self) -> Any:
        deadline = time.monotonic() + self.wait
        with self._cond:
            while True:
                if self.idle:
                    return self.idle.pop()
                if self.made < self.max_size:
                    self.made += 1
                    break
                left = deadline - time.monotonic()
                if left <= 0:
                    raise PoolExhausted(
                        f"{self.name}: all {self.max_size} connections stayed busy for {self.wait:g} s; "
                        "raise OPTIONS max_connections, or lower the load"
                    )
                self.waiting += 1
                try:
                    self._cond.wait(min(left, 0.05))  # short waits: a release may not notify
                finally:
                    self.waiting -= 1
        try:
            return self.factory()
        except BaseException:
            with self._cond:
                self.made -= 1
            raise

    def release(self, conn: Any) -> None:
        """Give ``conn`` back (a broken connection too: pymemcache reconnects it on next use)."""
        self.idle.append(conn)
        if self.waiting:
            with self._cond:
                self._cond.notify()

    def disconnect(self) -> None:
        """Close the sockets of the idle connections (they reconnect on next use): after the
        server was restarted, each would otherwise fail once."""
        for conn in list(self.idle):
            try:
                conn.close()
            except Exception:
                pass

    def close(self) -> None:
        """Close and drop every idle connection (one in use is closed when its process ends)."""
        while True:
            try:
                conn = self.idle.pop()
            except IndexError:
                return
            try:
                conn.close()
            except Exception:
                pass
