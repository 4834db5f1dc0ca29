"""The hit's meta get on the event loop: non-blocking sockets, a small pool per loop and server.

A coroutine's hit (:meth:`~regions.backends.memcached.MemcachedNamespaceManager.aget_entry`) sends
the same ``mg <key> v t k`` as the blocking path (:func:`.wire.get`) and reads the reply with the
same parser (:func:`.wire.parse_meta`), on a connection of the running loop's own, so it needs no
I/O thread. The loop's reader callback parses the reply and resumes the waiting task at once
(:class:`Reply`): one turn of the loop per hit. Everything else (misses, leases, stores, locks,
counters, a value in parts) stays on the store's I/O threads.

* **One pool per event loop and server** (:class:`LoopPools` of a :class:`~.nodes.Node`, the
  :class:`LoopPool` of each loop): a socket is read by the loop that made it, so two loops (in
  two threads) never share one. At most ``max_connections`` per loop; a caller finding none idle
  waits for one, at most ``timeout`` seconds. A pool whose loop is closed is dropped.
* **One request at a time per connection**, answered or the connection closed: a timeout
  (``timeout``: one timer per pool, set for the earliest deadline), a reply out of step, a garbage
  reply or a cancelled caller closes it, so no connection is ever left with unread bytes that the
  next request would take for its own reply.
* **The server's breaker** (:mod:`regions.breaker`) is the one the blocking path uses: a network
  failure here marks the server down for every caller, thread or coroutine, in every region on it.
  A connection made before the last outage began is not reused (the server may have restarted).
* **Fork**: a forked child builds new nodes (:meth:`~regions.backends.memcached.MemcachedStore.after_fork`),
  so it never writes to its parent's sockets; :class:`LoopPools` also checks the process id.
"""

from __future__ import annotations

import asyncio
import collections
import contextvars
import socket
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from pymemcache.exceptions import MemcacheUnexpectedCloseError

from ...errors import PoolExhausted
from ..loops import PerLoop
from .wire import Incomplete, parse_meta, parse_tagged, tagged_request

if TYPE_CHECKING:
    from .nodes import Node

_META_FLAGS = b" v t k\r\n"
_OUT_OF_STEP = "a reply that does not answer this get (connection dropped)"
_CLOSED = "the server closed the connection"
#: Bytes asked of each ``recv`` (a larger value arrives in several).
_RECV = 256 * 1024
#: Reads a reply from the start of a buffer: ``parse(buf, arg) -> (result, where it ends)``.
Parser = Callable[[bytes, Any], tuple[Any, int]]


class Reply(asyncio.Future[Any]):
    """The future of one request, awaited by one task (:meth:`LoopPool.get`): its reply resumes
    that task at once, from :meth:`Connection.data_received`, in the loop iteration that read the
    reply. (A plain future's result reaches its task through ``call_soon``: one more turn of the
    loop, with its ``select``, per hit, about 2 µs.) Only the reply does so, as the last thing its
    reader does; a failure or a cancellation wakes the task through ``call_soon``, as any future."""

    #: The waiting task's wake-up and its context (:meth:`add_done_callback`); class defaults:
    #: no ``__init__`` of its own on the hit's path.
    _wake: Callable[[Any], object] | None = None
    _context: Any = None
    #: The connection whose reply this is (:meth:`cancel` closes it).
    conn: Connection | None = None

    def add_done_callback(self, fn: Callable[[Any], object], *, context: Any = None) -> None:
        """Keep the awaiting task's wake-up (one: a :class:`Reply` never leaves :class:`LoopPool`)."""
        if self._wake is not None:
            raise RuntimeError("memcached: a request's reply has one waiter")
        if context is None:
            context = contextvars.copy_context()
        if self.done():
            self.get_loop().call_soon(fn, self, context=context)
        else:
            self._wake, self._context = fn, context

    def resolve(self, found: Any) -> None:
        """Set the result and run the waiting task now (from the reader: see the class docstring)."""
        self.set_result(found)
        wake = self._wake
        if wake is not None:
            self._wake = None
            self._context.run(wake, self)

    def fail(self, exc: BaseException) -> None:
        """Set ``exc`` and wake the waiting task soon (:meth:`~asyncio.loop.call_soon`)."""
        self.set_exception(exc)
        self._wake_soon()

    def cancel(self, msg: Any = None) -> bool:
        """Cancel the request: its connection is closed at once (its reply, if it comes, must
        never reach another request), and the waiting task is woken soon."""
        if not super().cancel(msg):
            return False
        if self.conn is not None:
            self.conn.abandon()
        self._wake_soon()
        return True

    def _wake_soon(self) -> None:
        wake = self._wake
        if wake is not None:
            self._wake = None
            self.get_loop().call_soon(wake, self, context=self._context)


class Connection:
    """One connection to a memcached server on one loop: one ``mg`` in flight at most. A
    non-blocking socket read by the loop's reader callback (:meth:`readable`) and written to
    directly (no asyncio transport: its write and read wrappers cost about 0.6 µs a hit)."""

    def __init__(self, pool: LoopPool, sock: socket.socket, outage: int) -> None:
        self.pool = pool
        self.loop = pool.loop
        #: The breaker's outage count when the connection was made (:meth:`LoopPool.take`).
        self.outage = outage
        self.sock: socket.socket | None = sock
        self.fd = sock.fileno()
        self.closed = False
        #: Loop time the request in flight was sent at (:meth:`LoopPool.watch`).
        self.sent_at = 0.0
        self._waiter: Reply | None = None
        self._parse: Parser = parse_meta
        self._arg: Any = b""
        self._chunks: list[bytes] = []
        self._size = 0
        self._need = 0
        #: The end of a request the socket did not take at once (sent when writable).
        self._unsent = b""
        self.loop.add_reader(self.fd, self.readable)  # always: an idle connection's EOF closes it

    # the loop's callbacks -------------------------------------------------------------------------
    def readable(self) -> None:
        try:
            data = self.sock.recv(_RECV)  # type: ignore[union-attr]
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:  # a reset
            self._fail(exc)
            return
        if not data:  # the server closed it
            self._fail(MemcacheUnexpectedCloseError(_CLOSED))
            return
        self.data_received(data)

    def _writable(self) -> None:
        try:
            sent = self.sock.send(self._unsent)  # type: ignore[union-attr]
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            self._fail(exc)
            return
        self._unsent = self._unsent[sent:]
        if not self._unsent:
            self.loop.remove_writer(self.fd)

    def data_received(self, data: bytes) -> None:
        waiter = self._waiter
        if waiter is None or waiter.done():  # bytes nobody asked for: out of step
            self._fail(MemcacheUnexpectedCloseError(_OUT_OF_STEP))
            return
        if self._chunks:  # the rest of a reply begun in earlier reads
            self._chunks.append(data)
            self._size += len(data)
            if self._size < self._need:
                return  # a large value: join once it is all here
            data = b"".join(self._chunks)
        try:
            found, end = self._parse(data, self._arg)
        except Incomplete as short:
            self._chunks = [data]
            self._size = len(data)
            self._need = short.need or self._size + 1
            return
        except Exception as exc:  # garbage: an error line, a malformed header
            self._fail(exc)
            return
        if end != len(data):
            self._fail(MemcacheUnexpectedCloseError(_OUT_OF_STEP))
            return
        self._waiter = None
        if self._chunks:
            self._chunks = []
            self._size = self._need = 0
        pool = self.pool
        pool.idle.append(self)  # answered: idle again before its task runs on (and may reuse it)
        if pool._waiters:  # noqa: SLF001 - the pool's own callers waiting for a connection
            pool._wake()  # noqa: SLF001
        waiter.resolve(found)  # (runs the waiting task: nothing after this line)

    # requests ---------------------------------------------------------------------------------------
    def request(self, data: bytes, parse: Parser, arg: Any) -> Reply:
        """Send ``data``; the future's result is what ``parse(reply, arg)`` reads from the reply."""
        loop = self.loop
        waiter = self._waiter = Reply(loop=loop)
        waiter.conn = self
        self._parse = parse
        self._arg = arg
        self.sent_at = loop.time()
        pool = self.pool
        if pool.watching is None:
            pool.watch()
        try:
            sent = self.sock.send(data)  # type: ignore[union-attr]
        except (BlockingIOError, InterruptedError):
            sent = 0
        except OSError as exc:  # (the waiter gets it: the caller trips the breaker)
            self._fail(exc)
            return waiter
        if sent < len(data):  # a full socket buffer: the rest when writable
            self._unsent = data[sent:]
            self.loop.add_writer(self.fd, self._writable)
        return waiter

    @property
    def waiting(self) -> bool:
        """Whether a request is in flight (sent, not answered)."""
        return self._waiter is not None

    def timed_out(self) -> None:
        pool = self.pool
        self._fail(TimeoutError(f"memcached {pool.node.label} did not answer within {pool.timeout:g} s"))

    def _done(self) -> None:
        self._waiter = None
        self._chunks = []
        self._size = self._need = 0

    def _fail(self, exc: BaseException) -> None:
        """End the request in flight with ``exc`` and close: the connection is never reused."""
        waiter = self._waiter
        self._done()
        self.close()
        if waiter is not None:  # in flight: it leaves the pool (an idle one leaves it in take())
            self.pool.release(self)
            if not waiter.done():
                waiter.fail(exc)

    def abandon(self) -> None:
        """The request's caller was cancelled: close, and leave the pool."""
        if self._waiter is not None:
            self._done()
            self.close()
            self.pool.release(self)

    def close(self) -> None:
        """Close the socket (on the loop's thread), at once: unread bytes are dropped with it."""
        self.closed = True
        sock = self.sock
        if sock is not None:
            self.sock = None
            loop = self.loop
            if not loop.is_closed():
                loop.remove_reader(self.fd)
                if self._unsent:
                    loop.remove_writer(self.fd)
            self._unsent = b""
            sock.close()


class LoopPool:
    """The connections of one loop to one server (see the module docstring)."""

    def __init__(self, node: Node, loop: asyncio.AbstractEventLoop) -> None:
        self.node = node
        self.loop = loop
        store = node.store
        self.max_size = store.max_connections
        self.timeout = store.timeout
        self.connect_timeout = store.connect_timeout
        self.idle: collections.deque[Connection] = collections.deque()
        self.made = 0
        #: Every open connection (for :meth:`watch`).
        self.conns: set[Connection] = set()
        #: The timer of :meth:`watch`, while one is set.
        self.watching: asyncio.TimerHandle | None = None
        self._waiters: collections.deque[asyncio.Future[None]] = collections.deque()

    def get(self, key: bytes) -> Awaitable[tuple[bytes, int] | None]:
        """``(value, seconds left)`` of ``key`` (encoded), or ``None``: :func:`.wire.get` on the loop.
        Raises ``OSError`` (a timeout too) or pymemcache's errors; the caller trips the breaker.
        With a connection idle, the request's :class:`Reply` itself (no coroutine on the hit's
        path); the connection goes back to the pool, or leaves it closed, by itself."""
        data = b"mg " + key + _META_FLAGS
        conn = self.take()
        if conn is None:
            return self._request(data, parse_meta, key)
        return conn.request(data, parse_meta, key)

    async def get_tagged(
        self, key: bytes, counters: list[bytes], tail: bytes
    ) -> tuple[tuple[bytes, int] | None, list[bytes | None]]:
        """:func:`.wire.get_tagged` on the loop (raises as :meth:`get` does); ``tail``: the
        counters' commands (:func:`.wire.counters_request`)."""
        return await self._request(tagged_request(key, tail), parse_tagged, (key, len(counters)))

    async def _request(self, data: bytes, parse: Parser, arg: Any) -> Any:
        conn = self.take() or await self._acquire_slow()
        return await conn.request(data, parse, arg)  # (the connection releases itself)

    def take(self) -> Connection | None:
        """An idle connection made since the server's last outage began, or ``None``."""
        idle = self.idle
        outages = self.node.breaker.outages
        while idle:
            conn = idle.pop()
            # (closed: the reader saw the server close it, or an outage began since it was made)
            if not conn.closed and conn.outage == outages:
                return conn
            conn.close()
            self.made -= 1
            self.conns.discard(conn)
        return None

    async def _acquire_slow(self) -> Connection:
        deadline = self.loop.time() + self.timeout
        while True:
            conn = self.take()
            if conn is not None:
                return conn
            if self.made < self.max_size:
                self.made += 1
                try:
                    return await self._connect()
                except BaseException:
                    self.made -= 1
                    self._wake()
                    raise
            left = deadline - self.loop.time()
            if left <= 0:
                raise PoolExhausted(
                    f"{self.node.pool.name}: all {self.max_size} connections of this event loop stayed "
                    f"busy for {self.timeout:g} s; raise OPTIONS max_connections, or lower the load"
                )
            waiter = self.loop.create_future()
            self._waiters.append(waiter)
            try:
                await asyncio.wait_for(waiter, left)
            except TimeoutError:
                pass
            finally:
                if waiter in self._waiters:
                    self._waiters.remove(waiter)

    async def _connect(self) -> Connection:
        node = self.node
        outage = node.breaker.outages
        try:
            async with asyncio.timeout(self.connect_timeout):
                sock = await self._open(*node.server)
        except TimeoutError as exc:
            raise TimeoutError(
                f"memcached {node.label}: no connection within {self.connect_timeout:g} s"
            ) from exc
        conn = Connection(self, sock, outage)
        self.conns.add(conn)
        return conn

    async def _open(self, host: str, port: int) -> socket.socket:
        """A connected non-blocking TCP socket (``TCP_NODELAY``, as the blocking path's): each
        address of ``host`` in turn (a numeric one is not looked up; a name is, on the loop's
        resolver)."""
        loop = self.loop
        try:
            infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_NUMERICHOST)
        except socket.gaierror:
            infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        error: OSError = OSError(f"memcached {host}:{port}: no address")
        for family, kind, proto, _name, address in infos:
            sock = socket.socket(family, kind, proto)
            try:
                sock.setblocking(False)
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                await loop.sock_connect(sock, address)
            except BaseException as exc:
                sock.close()
                if not isinstance(exc, OSError):
                    raise
                error = exc
                continue
            return sock
        raise error

    def watch(self) -> None:
        """Time the requests in flight out: one timer per pool, set for the earliest deadline (not
        one per request: a hit then costs no timer of the loop's)."""
        now = self.loop.time()
        earliest = None
        for conn in list(self.conns):
            if conn.waiting:
                deadline = conn.sent_at + self.timeout
                if deadline <= now:
                    conn.timed_out()
                elif earliest is None or deadline < earliest:
                    earliest = deadline
        if earliest is None:  # (called by a request about to be sent: it is in flight already)
            earliest = now + self.timeout
        self.watching = self.loop.call_at(earliest, self._check)

    def _check(self) -> None:
        self.watching = None
        if any(conn.waiting for conn in self.conns):
            self.watch()

    def release(self, conn: Connection) -> None:
        """Take back ``conn``: idle again, or gone when closed (a connection answered goes back by
        itself, :meth:`Connection.data_received`; a failed or abandoned one calls this)."""
        if conn.closed:
            self.made -= 1
            self.conns.discard(conn)
        else:
            self.idle.append(conn)
        self._wake()

    def _wake(self) -> None:
        waiters = self._waiters
        while waiters:
            waiter = waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return

    def drop(self) -> None:
        """Close every socket of this pool, whose loop is closed (nothing reads them any more)."""
        for conn in list(self.conns):
            conn.close()
        self.conns.clear()
        self.idle.clear()

    def close(self) -> None:
        """Close the idle connections (on the loop's own thread; one in use closes when released)."""
        while self.idle:
            conn = self.idle.pop()
            conn.close()
            self.made -= 1
            self.conns.discard(conn)
        if self.watching is not None and not self.conns:
            self.watching.cancel()
            self.watching = None


class LoopPools(PerLoop[LoopPool]):
    """A node's :class:`LoopPool` for each event loop that reads through it."""

    backend = "memcached"

    def __init__(self, node: Node) -> None:
        super().__init__()
        self.node = node

    def make(self, loop: asyncio.AbstractEventLoop) -> LoopPool:
        return LoopPool(self.node, loop)

    def dropped(self, pool: LoopPool) -> None:
        pool.drop()

    def closer(self, pool: LoopPool) -> Callable[[], None]:
        return pool.close
