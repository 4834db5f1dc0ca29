"""A Redis region's hit on the event loop: redis-py's asyncio connections, a few per loop.

A coroutine's hit (:meth:`~regions.backends.redis.RedisNamespaceManager.aget_entry`) sends the very
bytes the blocking hit sends (``GET`` + ``PTTL``, packed once per key; a tagged hit adds the
``MGET`` of its tags' counters) on a ``redis.asyncio`` connection of the running loop, and reads the
replies with redis-py's parser: no I/O thread, no protocol written here.

* **Connections per event loop** (:class:`LoopConnections` of a store, the :class:`LoopPool` of
  each loop): a connection's streams belong to the loop that opened them, so two loops (in two
  threads) never share one. At most ``max_connections`` per loop; a caller finding none idle waits
  ``connect_timeout`` seconds for one, then gets redis-py's own "No connection available." (the
  store reports :class:`~regions.errors.PoolExhausted`, not a failed server). Pools of closed loops
  are dropped. (redis-py's ``redis.asyncio.ConnectionPool`` and ``send_packed_command`` were
  measured: they cost 1.5x and 1.3x a sync raw GET for the pool's locks and bookkeeping, and the
  task ``asyncio.wait_for`` makes for every write; the idle list and the direct write below are
  what remains of them on the hit's path.)
* **One request at a time per connection**, its replies all read or the connection closed: one
  deadline per request (``socket_timeout``), watched by one timer per pool (:meth:`LoopPool._check`
  aborts a late connection; redis-py would set a timer per reply), and :meth:`LoopPool.request`
  closes the connection on any failure, a timeout, a reset or a cancelled caller, so no reply is
  ever left for the next request. A connection's handshake is timed too
  (``connect_timeout`` + ``socket_timeout``): a stopped server's kernel still accepts connections.
* **The server's breaker** is the one the blocking path uses (the store's): a network failure
  here marks the server down for every caller in every region on it. A connection made before the
  server's last outage began is not reused, nor one the server closed while it was idle.
* **Fork**: a forked child gets a new :class:`LoopConnections`
  (:meth:`~regions.backends.redis.RedisStore.after_fork`); each one also checks the process id.
"""

from __future__ import annotations

import asyncio
import collections
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import redis.asyncio
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from ..loops import PerLoop
from .client import POOL_EMPTY, async_connection_kwargs

if TYPE_CHECKING:
    from . import RedisStore


#: The idle check of a connection (EOF, a reset, or bytes nobody asked for): ``can_read`` since
#: redis-py 8, ``can_read_destructive`` before (deprecated since).
_CAN_READ = "can_read" if hasattr(redis.asyncio.Connection, "can_read") else "can_read_destructive"


def _write(conn: Any, data: bytes) -> None:
    """Queue ``data`` on ``conn``'s stream without a task (``send_packed_command`` wraps each write
    in ``asyncio.wait_for``, a task of its own). A hit's request is a few hundred bytes: the
    transport sends it at once, or buffers it; no drain is awaited. A request that cannot be
    answered is timed out by the read of its reply."""
    writer = conn._writer  # noqa: SLF001 - the connection's StreamWriter, set by connect()
    if writer is None or writer.transport.is_closing():
        raise RedisConnectionError("Connection closed by the server before write")
    writer.write(data)


def _abort(conn: Any) -> None:
    """Close ``conn``'s transport at once: a read waiting on it raises."""
    writer = conn._writer  # noqa: SLF001 - as in _write
    if writer is not None:
        writer.transport.abort()


class LoopPool:
    """One event loop's connections to the store's server (see the module docstring)."""

    def __init__(self, store: RedisStore, loop: asyncio.AbstractEventLoop, make: Any) -> None:
        self.loop = loop
        self.breaker = store.breaker
        self.max_size = store.max_connections
        self.wait = store.connect_timeout
        self.timeout = store.socket_timeout
        self.label = store.server_label
        self._make = make
        #: ``(connection, outage count when it was made)``, the most recently used last.
        self.idle: collections.deque[tuple[Any, int]] = collections.deque()
        self.made = 0
        self._waiters: collections.deque[asyncio.Future[None]] = collections.deque()
        #: Connection -> loop time its request in flight must be answered by (:meth:`_check`).
        self.deadlines: dict[Any, float] = {}
        #: Connections whose request :meth:`_check` ended (aborted: the reader raises).
        self.expired: set[Any] = set()
        #: The timer of :meth:`_check`, while one is set.
        self.watching: asyncio.TimerHandle | None = None

    async def request(self, data: bytes, replies: int) -> list[Any]:
        """The ``replies`` replies of the commands packed in ``data``, sent on one connection.
        Raises redis-py's errors (a timeout too); the caller trips the breaker."""
        held = await self._take()
        conn = held[0]
        deadlines = self.deadlines
        deadlines[conn] = self.loop.time() + self.timeout
        if self.watching is None:
            self.watching = self.loop.call_at(deadlines[conn], self._check)
        try:
            _write(conn, data)
            read = conn.read_response
            found = [await read() for _ in range(replies)]
        except BaseException as exc:
            del deadlines[conn]
            await self._drop(conn)  # its replies may be half read: never reused
            self._wake()
            if conn in self.expired:
                self.expired.discard(conn)
                if isinstance(exc, Exception):  # (the reader's error once its link was aborted)
                    raise RedisTimeoutError(
                        f"redis {self.label} did not answer within {self.timeout:g} s") from exc
            raise
        del deadlines[conn]
        if conn in self.expired:  # answered as its deadline passed: aborted all the same
            self.expired.discard(conn)
            await self._drop(conn)
        else:
            self.idle.append(held)
        self._wake()
        return found

    def _check(self) -> None:
        """Abort the connections whose request is past its deadline (their readers then fail, and
        :meth:`request` reports a timeout), and set the timer for the next deadline. One timer per
        pool, not one per request: a hit then costs no timer of the loop's (the connections' own
        ``socket_timeout`` is None: redis-py would set one per reply)."""
        self.watching = None
        now = self.loop.time()
        earliest = None
        for conn, deadline in list(self.deadlines.items()):
            if deadline <= now:
                if conn not in self.expired:
                    self.expired.add(conn)
                    _abort(conn)
            elif earliest is None or deadline < earliest:
                earliest = deadline
        if earliest is not None:
            self.watching = self.loop.call_at(earliest, self._check)

    async def _take(self) -> tuple[Any, int]:
        outages = self.breaker.outages
        idle = self.idle
        while idle:
            held = idle.pop()
            conn = held[0]
            if held[1] == outages and conn.is_connected:
                try:
                    if not await getattr(conn, _CAN_READ)():  # (True: bytes nobody asked for)
                        return held
                except Exception:  # the server closed it while idle: not a failure of this call
                    pass
            await self._drop(conn)
        return await self._acquire_slow()

    async def _acquire_slow(self) -> tuple[Any, int]:
        deadline = self.loop.time() + self.wait
        while True:
            if self.idle:
                return await self._take()
            if self.made < self.max_size:
                self.made += 1
                outage = self.breaker.outages
                conn = self._make()
                limit = self.wait + self.timeout
                try:
                    # the handshake too (HELLO...): a stopped server's kernel still accepts
                    async with asyncio.timeout(limit):
                        await conn.connect()
                except BaseException as exc:
                    self.made -= 1
                    await conn.disconnect(nowait=True)
                    self._wake()
                    if type(exc) is TimeoutError:  # asyncio.timeout's, which says nothing
                        raise RedisTimeoutError(
                            f"redis {self.label}: no connection made and greeted within {limit:g} s "
                            "(connect_timeout + socket_timeout)") from exc
                    raise
                return conn, outage
            left = deadline - self.loop.time()
            if left <= 0:
                raise RedisConnectionError(POOL_EMPTY)
            waiter = self.loop.create_future()
            self._waiters.append(waiter)
            try:
                await asyncio.wait_for(waiter, left)
            except TimeoutError:
                pass
            finally:
                if waiter in self._waiters:
                    self._waiters.remove(waiter)

    async def _drop(self, conn: Any) -> None:
        self.made -= 1
        try:
            await conn.disconnect(nowait=True)
        except Exception:
            pass

    def _wake(self) -> None:
        waiters = self._waiters
        while waiters:
            waiter = waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return

    def close_soon(self) -> None:
        """:meth:`aclose` as a task of this pool's loop (called on the loop's thread)."""
        self.loop.create_task(self.aclose())

    async def aclose(self) -> None:
        """Close the idle connections (on this pool's loop; one in use closes when it fails or at
        its loop's end)."""
        while self.idle:
            await self._drop(self.idle.pop()[0])


class LoopConnections(PerLoop[LoopPool]):
    """A store's :class:`LoopPool` for each event loop that reads through it."""

    backend = "redis"

    def __init__(self, store: RedisStore) -> None:
        super().__init__()
        self.store = store
        url = store.location if isinstance(store.location, str) else store.location[0]
        # Only parsed here (URL, password, db, TLS): connections are made by each loop's pool.
        kwargs = {**async_connection_kwargs(store.options), "socket_timeout": None}  # (LoopPool.request)
        self._settings = redis.asyncio.ConnectionPool.from_url(url, **kwargs)

    def _connection(self) -> Any:
        settings = self._settings
        return settings.connection_class(**settings.connection_kwargs)

    def make(self, loop: asyncio.AbstractEventLoop) -> LoopPool:
        return LoopPool(self.store, loop, self._connection)

    def closer(self, pool: LoopPool) -> Callable[[], None]:
        return pool.close_soon  # (a closed loop's sockets closed with its transports: nothing to drop)
