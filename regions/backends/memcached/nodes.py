"""The servers of a memcached region: one :class:`Node` per server, keys spread over them, and the
generation counters that ``clear()`` / ``invalidate_all()`` bump on every node.

* Each node has a bounded :class:`~regions.backends.memcached.pool.Pool` of pymemcache clients and
  the :class:`~regions.breaker.Breaker` of its server, one per server and process (:class:`Server`:
  every region, of every manager, whose LOCATION names the server shares it), with a
  :class:`~regions.breaker.Backlog` of its own. A network failure marks the server down for all of
  them; its keys are then not cached (reads miss, writes are skipped, no network wait) until a probe
  finds it answering, and each region's invalidations made meanwhile are replayed first. A forked
  child starts with servers of its own, up, with nothing to replay (its parent replays its own).
  Keys are never moved to another node: a value written elsewhere during the outage would outlive
  invalidations made after the node returns.
* Keys go to nodes by rendezvous hashing: each node scores ``blake2b(key)`` mixed with a seed of
  its address; the highest score wins. Adding or removing a server moves only its share of keys.
* Generation counters live on every node and are read as their maximum (lagging nodes are raised
  to it), and each process never goes back to a lower value than one it has seen: a counter found
  below it (set by something else) is raised above it, which is a bump. A node that was away while
  a counter was bumped is bumped when it returns, before any read reaches it.
* A counter that holds no number (written by something else under the region's keys) is
  replaced by one above any value a process can have seen (the time in µs; counters are made from
  the time in ms): a bump, for a read or a bump that finds it (:meth:`Node.replace_non_number`).
"""

from __future__ import annotations

import functools
import hashlib
import os
import threading
import time
import weakref
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from pymemcache.client.base import Client
from pymemcache.exceptions import MemcacheUnexpectedCloseError, MemcacheUnknownCommandError

from ...breaker import Breaker
from ...errors import BackendUnavailable
from ...throttle import shown
from .aio import LoopPools
from .pool import Pool
from .wire import as_int, not_a_number

if TYPE_CHECKING:
    from . import MemcachedStore

#: Failures that say the server (or the link to it) is not answering. A refusal of one value
#: (``SERVER_ERROR object too large``) or bad input is not one.
NETWORK_ERRORS = (OSError, MemcacheUnexpectedCloseError, MemcacheUnknownCommandError)
_MASK = (1 << 64) - 1


def _mix(value: int) -> int:
    """A 64-bit finalizer (splitmix64): spreads the bits of ``value`` over the whole word."""
    value = (value ^ (value >> 30)) * 0xBF58476D1CE4E5B9 & _MASK
    value = (value ^ (value >> 27)) * 0x94D049BB133111EB & _MASK
    return value ^ (value >> 31)


def key_hash(key: str) -> int:
    return int.from_bytes(hashlib.blake2b(key.encode(), digest_size=8).digest(), "little")


def parse_servers(location: Any) -> list[tuple[str, int]]:
    """``"host:port"``, ``"a:1;b:2"`` (Beaker's form) or a list of them -> ``[(host, port)]``."""
    if isinstance(location, str):
        items: Sequence[Any] = [p for p in location.replace(",", ";").split(";") if p.strip()]
    elif isinstance(location, (list, tuple)):
        items = location
    else:
        raise ValueError("LOCATION must be 'host:port' or a list of 'host:port' strings")
    servers = []
    for item in items:
        if not isinstance(item, str):
            raise ValueError(f"server {item!r} is not a 'host:port' string")
        host, sep, port = item.strip().rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(f"server {item!r} is not of the form 'host:port'")
        servers.append((host.strip("[]"), int(port)))
    if not servers:
        raise ValueError("LOCATION names no server")
    return servers


class Server:
    """One memcached server as this process sees it: the breaker every node naming it shares (the
    first timeout marks it down for every region), and those nodes (held weakly)."""

    def __init__(self, label: str) -> None:
        self.label = label
        self.nodes: weakref.WeakSet[Node] = weakref.WeakSet()
        self.breaker = Breaker(f"memcached {label}", self.probe, 1.0, on_down=self.disconnect)

    def probe(self) -> None:
        """Raise unless the server answers (through the node of the shortest timeouts: nodes differ
        by their region's timeouts only)."""
        nodes = list(self.nodes)
        if nodes:
            min(nodes, key=lambda node: node.store.connect_timeout + node.store.timeout).probe()
            return
        _forget(self)  # every node was dropped without closing: nothing left to probe for
        raise ConnectionError(f"no region uses memcached {self.label} any more")

    def disconnect(self) -> None:
        """The server is down: every node closes its idle connections (they may be stuck)."""
        for node in list(self.nodes):
            node.pool.disconnect()

    def describe(self) -> None:
        """Name the regions using the server in the breaker's log lines; probe as often as the most
        eager of them asks."""
        nodes = list(self.nodes)
        if not nodes:
            return
        names = ", ".join(map(repr, sorted({node.store.region for node in nodes})))
        many = "s" if "," in names else ""
        self.breaker.name = f"cache region{many} {names}: memcached {self.label}"
        self.breaker.retry_interval = min(node.store.retry_interval for node in nodes)


_servers: dict[str, Server] = {}
_servers_lock = threading.Lock()
_servers_pid = os.getpid()


def _forget_parent_servers() -> None:
    """In a forked child: the parent's servers (breakers, threads, backlogs) are not its own."""
    global _servers_lock, _servers_pid
    if _servers_pid != os.getpid():
        _servers_lock = threading.Lock()  # the parent's may have been held by one of its threads
        _servers.clear()
        _servers_pid = os.getpid()


os.register_at_fork(after_in_child=_forget_parent_servers)


def _attach(node: Node) -> Server:
    """The :class:`Server` of ``node``'s address in this process, ``node`` now one of its users."""
    _forget_parent_servers()  # (a store's own after-fork rebuild may come before the hook above)
    with _servers_lock:
        server = _servers.get(node.label)
        if server is None or server.breaker.closed:
            server = _servers[node.label] = Server(node.label)
        server.nodes.add(node)
        server.describe()
        return server


def _detach(node: Node) -> None:
    """``node`` no longer uses its server; the last one to go stops the server's breaker."""
    with _servers_lock:
        server = node.host
        server.nodes.discard(node)
        if server.nodes:
            server.describe()
            return
    _forget(server)


def _forget(server: Server) -> None:
    with _servers_lock:
        if server.nodes:
            return
        server.breaker.close()
        if _servers.get(server.label) is server:
            del _servers[server.label]


class Node:
    """One server as one region uses it: its pool of clients, the server's breaker, its backlog."""

    def __init__(self, store: MemcachedStore, server: tuple[str, int]) -> None:
        self.server = server
        self.label = f"{server[0]}:{server[1]}"
        self.seed = key_hash(self.label)
        self.store = store
        name = f"cache region {store.region!r}: memcached {self.label}"
        self.pool = Pool(self._client, store.max_connections, store.timeout, name)
        #: Connections of each event loop, for coroutines' hits (:mod:`.aio`).
        self.aio = LoopPools(self)
        self.host = _attach(self)
        self.breaker = self.host.breaker
        # too many invalidations pending for this node: a region-wide clear stands for them all
        overflow = lambda: store.nodes._bump_on(self, store.generation_key)  # noqa: E731
        self.backlog = self.breaker.backlog(overflow)
        self.unavailable = f"{name} is down; retrying every {store.retry_interval:g} s"

    def _client(self) -> Client:
        store = self.store
        return Client(
            self.server, connect_timeout=store.connect_timeout, timeout=store.timeout, no_delay=True
        )

    @property
    def down(self) -> bool:
        return self.breaker.down

    def call(self, method: str, *args: Any, **kwargs: Any) -> Any:
        """``client.<method>(...)`` on a pooled client; a network failure marks the node down."""
        if self.breaker.down:
            raise BackendUnavailable(self.unavailable)
        return self.direct(method, *args, **kwargs)

    def direct(self, method: str, *args: Any, **kwargs: Any) -> Any:
        """:meth:`call` even while the node is down (the probe and the replays use it)."""
        pool = self.pool
        client = pool.acquire()
        try:
            return getattr(client, method)(*args, **kwargs)
        except NETWORK_ERRORS as exc:
            self.breaker.trip(exc)
            raise
        finally:
            pool.release(client)

    def probe(self) -> None:
        """Raise unless the server answers, on a connection of its own (pooled ones may be stuck)."""
        client = self._client()
        try:
            client.version()
        finally:
            client.close()

    def defer(self, key: Any, action: Callable[[], Any]) -> None:
        """Replay ``action`` (this region's invalidation) before the server serves reads again."""
        self.backlog.defer(key, action)

    def replace_non_number(
        self, key: str, value: int, what: str, meaning: str = "a bump: entries made under it miss"
    ) -> bool:
        """Replace ``key``'s value by ``value`` if it holds no number (:func:`.wire.as_int`), and
        say what it held (throttled per region). ``False`` when it is gone or holds a number by now
        (another process replaced it first): nothing to do. Runs while the node is down too (a
        replayed bump)."""
        held, cas = self.direct("gets", key)
        if held is None or as_int(held) is not None:
            return False
        self.direct("cas", key, str(value).encode(), cas, noreply=False)  # lost to a writer: fine
        self.store.counter_log(what).warning(
            "%s %r on memcached %s held %s, not a number; replaced by %d (%s). Something else "
            "writes under this region's keys: give the region a KEY_PREFIX or a server of its own",
            what, key, self.label, shown(held), value, meaning,
        )
        return True

    def close(self) -> None:
        self.backlog.drop()  # (the store said how many die with it)
        _detach(self)
        self.pool.close()
        self.aio.close()


class Nodes:
    """The region's nodes, the key -> node map, and the generation counters kept on all of them."""

    def __init__(self, store: MemcachedStore, servers: list[tuple[str, int]]) -> None:
        self.store = store
        self.all = [Node(store, server) for server in servers]
        #: The node of every key when there is only one (the common case: no hashing).
        self.single: Node | None = self.all[0] if len(self.all) == 1 else None
        #: The highest value of each counter this process has read or written.
        self.seen: dict[str, int] = {}

    def node_for(self, key: str) -> Node:
        if self.single is not None:
            return self.single
        h = key_hash(key)
        return max(self.all, key=lambda node: _mix(h ^ node.seed))

    def live(self) -> list[Node]:
        nodes = [node for node in self.all if not node.breaker.down]
        if not nodes:
            raise BackendUnavailable(self.all[0].unavailable if self.single else self._all_down())
        return nodes

    def _all_down(self) -> str:
        return f"cache region {self.store.region!r}: every memcached server is down"

    # generation counters -----------------------------------------------------------------------
    def read_generations(self, names: list[str], _create: bool = True, _replaced: bool = False) -> list[int]:
        """The current value of each counter: the maximum over the live nodes (created if missing,
        replaced if it holds no number)."""
        found: list[tuple[Node, dict[str, int]]] = []
        damaged: list[tuple[Node, str]] = []
        failure: Exception | None = None
        for node in self.live():
            try:
                raw = node.call("get_many", names)
            except Exception as exc:
                failure = exc
                continue
            got = {}
            for name, held in raw.items():
                value = as_int(held)
                if value is None:
                    damaged.append((node, name))
                else:
                    got[name] = value
            found.append((node, got))
        if not found:
            raise failure or BackendUnavailable(self._all_down())
        if damaged and not _replaced:  # then read back what won (another process may replace too)
            for node, name in damaged:
                above = max((v.get(name, 0) for _, v in found), default=0)
                try:
                    node.replace_non_number(name, self._above(name, above), "generation counter")
                except Exception:
                    pass  # a network failure marked the node down; the read below sees what is left
            return self.read_generations(names, _create, _replaced=True)
        missing = [name for name in names if not any(name in v for _, v in found)]
        if missing and _create:  # new, or evicted everywhere: start at the time in ms, above any
            start = str(time.time_ns() // 1_000_000).encode()  # value used before; read back what
            for node, _ in found:  # won (another process may have added its own first)
                for name in missing:
                    self._try(node, "add", name, start, noreply=False)
            return self.read_generations(names, _create=False, _replaced=_replaced)
        values = []
        for name in names:
            top = max((v[name] for _, v in found if name in v), default=time.time_ns() // 1_000_000)
            seen = self.seen.get(name, 0)
            if top < seen:  # below what this process used: set by something else. Going back to the
                top = seen + 1  # value it had would serve entries older than the bumps made since
            for node, got in found:
                if got.get(name) != top:
                    self._raise_to(node, name, top, got.get(name))
            self.seen[name] = top
            values.append(top)
        return values

    def _above(self, name: str, value: int) -> int:
        """A value for counter ``name`` above ``value``, above any this process has seen, and above
        any counter made from the time in ms (the time in µs)."""
        return max(value + 1, self.seen.get(name, 0) + 1, time.time_ns() // 1000)

    def _raise_to(self, node: Node, name: str, value: int, current: int | None) -> None:
        if current is None:
            self._try(node, "add", name, str(value).encode(), noreply=False)
        elif current < value:
            self._try(node, "incr", name, value - current, noreply=False)

    @staticmethod
    def _try(node: Node, method: str, *args: Any, **kwargs: Any) -> None:
        try:
            node.call(method, *args, **kwargs)
        except Exception:
            pass  # the node is marked down; the maximum is taken again on the next read

    def bump(self, name: str) -> None:
        """Increase counter ``name`` on every node; nodes that are down get it when they return.

        Raises when no node took it (the invalidation is then in force for nobody yet).
        """
        reached = 0
        failure: Exception | None = None
        for node in self.all:
            action = functools.partial(self._bump_on, node, name)
            if node.breaker.down:
                node.defer(("bump", name), action)
                continue
            try:
                action()
                reached += 1
            except Exception as exc:
                failure = exc
                node.defer(("bump", name), action)
        if not reached:
            raise failure or BackendUnavailable(self._all_down())

    def defer_bump(self, name: str) -> None:
        """Bump counter ``name`` on every node as an invalidation that could not be made now: replayed
        before the node serves reads again (:meth:`Node.defer`)."""
        for node in self.all:
            node.defer(("bump", name), functools.partial(self._bump_on, node, name))

    def _bump_on(self, node: Node, name: str) -> None:
        try:
            value = node.direct("incr", name, 1, noreply=False)
        except Exception as exc:
            if not not_a_number(exc):
                raise
            # holds no number: replaced by a value above any in use (that is the bump), or by
            # another process's meanwhile, which is one too
            node.replace_non_number(name, self._above(name, 0), "generation counter")
            value = as_int(node.direct("get", name))
        if value is None:  # missing here: one above the highest value known
            value = max(self.seen.get(name, 0), time.time_ns() // 1_000_000) + 1
            if not node.direct("add", name, str(value).encode(), noreply=False):
                value = node.direct("incr", name, 1, noreply=False) or value
        value = as_int(value)
        seen = self.seen.get(name, 0)
        if value is not None and value <= seen:  # below a value in use: set by something else
            value = seen + 1
            self._raise_to(node, name, value, as_int(node.direct("get", name)))
        if value is not None and value > seen:
            self.seen[name] = value
        # now that the server holds it, this process re-reads its counters on the next call (a
        # bump replayed by the probe thread too, or a read made meanwhile would keep the old one)
        self.store.cleared_at = time.monotonic()

    def close(self) -> None:
        for node in self.all:
            node.close()
