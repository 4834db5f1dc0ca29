"""``redis``: entries on a Redis server (or a Sentinel's master, or a Redis Cluster), through
redis-py.

* A hit is one round trip: ``GET`` and ``PTTL`` of the key sent together on one pooled connection
  (a tagged hit adds the ``MGET`` of its tags' counters to the same send). The entry is sealed as
  on memcached (:mod:`regions.backends.sealed`: ``R1`` + a 32-byte tag over the key and the pickle,
  checked before anything is unpickled).
* A coroutine's hit (``aget_entry``, ``aget_entry_tagged``:
  :class:`~regions.backends.contract.AsyncEntries`) sends the same bytes on a ``redis.asyncio``
  connection of its own event loop (:mod:`.aio`), decoded by the same code, with the same breaker:
  no I/O thread. Through Sentinel or a cluster it runs the blocking hit on the I/O threads.
* Freshness comes from the server: an entry is written with ``PX`` = its TIMEOUT plus the stale
  window, and the hit's ``PTTL`` gives its age on the server's clock, so the writer's clock does
  not decide how long it lives (an entry whose writer's time disagrees is rebased).
* A value is one Redis string, at most 512 MB (Redis's limit): no split into parts. A larger value
  is refused by the server, a failure of that store only (the value is returned, not cached).
* Compute-once across processes: :mod:`.lock` (``SET NX PX`` with a token, compare-and-delete
  release), and leases (:mod:`.lease`): a delete in any process while a value is computed refuses
  its store.
* ``clear()`` and ``invalidate_all()`` delete the region's (namespace's) keys found by ``SCAN``
  of their prefix, and nothing else: no ``FLUSHDB``. Tag counters (:mod:`.tags`), locks and
  invalidation logs (:mod:`.sync_log`) live under ``~`` prefixes that no entry key has.
* The server's health is shared per process by every region on it (:mod:`.client`): a network
  failure is a miss, logged once; the server is skipped until it answers, and each region's
  invalidations made meanwhile are replayed first. redis-py's pools start anew in a forked child.

This module holds the store and the namespace manager; their collaborators: :mod:`.options`
(LOCATION and OPTIONS, checked without redis-py), :mod:`.client` (the redis-py client, the
per-server breaker), :mod:`.aio` (coroutines' hits on the event loop), :mod:`.lock`
(``shared_lock``/``update_lock``), :mod:`.lease` (the lease scripts), :mod:`.tags`
(``store.tags``) and :mod:`.sync_log` (``store.sync_storage``, with the optional ``wait`` of
:class:`~regions.backends.contract.LogStorage` for push invalidation).
"""

from __future__ import annotations

import asyncio
import math
import pickle
import secrets
import time
from collections.abc import Callable, Hashable, Iterator, Mapping
from typing import Any, TypeVar

from ... import binding
from ...errors import BackendUnavailable, PoolExhausted, UnstorableValue
from ...signing import RejectedEntry
from ..contract import BOOKKEEPING, LEASE_SECONDS, Backend, Entry, Store
from ..sealed import LEASE_MARK, Placeholder, seal, unseal
from ..wire_keys import guarded, safe_namespace
from . import options as settings

T = TypeVar("T")
#: Storage format of entries, part of every entry's key: entries of another format are misses.
FORMAT = "E1"
KEY_LIMIT = 250
#: Seconds within which the writer's time and the age the server gives an entry agree (the
#: server counts ms; this covers the write's own round trip): beyond it, the entry is rebased.
CLOCKS_AGREE = 0.25
#: The longest life in ms sent with PX (Redis takes up to 2**63 ms, less the current time).
LONGEST_MS = 2**53


def glob_escape(text: str) -> str:
    """``text`` matched literally by SCAN's MATCH pattern."""
    return "".join("\\" + ch if ch in "*?[]\\" else ch for ch in text)


class RedisStore(Store):
    """A Redis region: its client (:attr:`client`), server health, tag versions and options."""

    name = "redis"
    needs_location = True
    pushes = True
    signs = True
    key_limit = KEY_LIMIT
    options_schema = settings.SCHEMA

    def __init__(self, region: str, location: Any, options: Any, **kwargs: Any) -> None:
        super().__init__(region, location, options, **kwargs)
        from . import client as clients  # redis-py is imported with the first Redis region
        from .lease import STORE, TAKE
        from .lock import RELEASE
        from .sync_log import APPEND
        from .tags import RedisTags

        get = self.options.get
        self.socket_timeout = float(get("socket_timeout", 1.0))
        self.connect_timeout = float(get("connect_timeout", 1.0))
        self.retry_interval = float(get("retry_interval", 1.0))
        self.distributed_lock = bool(get("distributed_lock", True))
        self.cluster = bool(get("cluster", False))
        #: Coroutines' hits are read on their event loop (:mod:`.aio`); through Sentinel or a
        #: cluster they run on the I/O threads (redis-py's clients for those are not used there).
        self.reads_on_loop = not self.cluster and not get("sentinel")
        self.max_connections = max(1, int(get("max_connections", 32)))
        self.network_errors = clients.NETWORK_ERRORS
        self.server_label = clients.label(location, self.options)
        self._clients = clients
        self._scripts = {"release": RELEASE, "take": TAKE, "store": STORE, "append": APPEND}
        self._connect()
        #: Entry keys start with it: ``clear()`` scans it. Other regions' never do (identities are
        #: length-prefixed), nor do tags, locks and logs (``~`` prefixes).
        self.key_root = safe_namespace(self.identity, 60)
        self.fleet_root = self.namespace_root(f"{self.identity}:{BOOKKEEPING}")
        self.tags: RedisTags = RedisTags(self)

    def _connect(self) -> None:
        self.client = self._clients.make_client(self.location, self.options)
        self._loop_connections: Any = None
        self._packer: Any = None
        self.scripts = _Scripts(self.client, self._scripts)
        self.server = self._clients.attach(self)
        self.breaker = self.server.breaker
        self.backlog = self.breaker.backlog(overflow=self.clear)
        self.unavailable = f"redis {self.server_label} is down; retrying every {self.retry_interval:g} s"

    @classmethod
    def check_location(cls, location: Any) -> str | None:
        try:
            settings.urls(location)
        except ValueError as exc:
            return str(exc)
        return None

    @classmethod
    def check_settings(cls, location: Any, options: Mapping[str, Any]) -> list[tuple[str, str, str]]:
        """A list of servers without ``cluster``, Sentinel's form, TLS without rediss://, no redis-py."""
        return settings.problems(location, options)

    def pack(self, commands: list[tuple[Any, ...]]) -> bytes:
        """``commands`` as the bytes sent for them (redis-py's packing, done once per key)."""
        if self.cluster:
            return b""
        packer = self._packer
        if packer is None:  # a connection never connected: only its serializer is used
            pool = self.client.connection_pool
            packer = self._packer = pool.connection_class(**pool.connection_kwargs)
        return b"".join(packer.pack_commands(commands))

    @property
    def loop_connections(self) -> Any:
        """Each event loop's connections for coroutines' hits (:class:`.aio.LoopConnections`),
        made on first use (``redis.asyncio`` is imported then)."""
        found = self._loop_connections
        if found is None:
            from .aio import LoopConnections

            found = self._loop_connections = LoopConnections(self)
        return found

    def namespace_root(self, namespace: str) -> str:
        """What every entry key of ``namespace`` starts with (length-prefixed: no namespace's
        root starts with another's)."""
        part = safe_namespace(namespace, 80)
        return f"{self.key_root}:{len(part)}.{part}:"

    def namespace(self, namespace: str) -> RedisNamespaceManager:
        return RedisNamespaceManager(namespace, self)

    # calls -------------------------------------------------------------------------------
    def guarded_call(self, call: Callable[[Any], T]) -> T:
        """``call(client)``, unless the server is down; a network failure marks it down."""
        if self.breaker.down:
            raise BackendUnavailable(self.unavailable)
        try:
            return call(self.client)
        except self.network_errors as exc:
            self.failed(exc)
            raise

    def failed(self, exc: BaseException) -> None:
        """A call failed on the network: the server is marked down. A pool whose connections all
        stayed busy for ``connect_timeout`` is no server failure: :class:`PoolExhausted` instead."""
        if self._clients.exhausted(exc):
            raise PoolExhausted(
                f"cache region {self.region!r}: all {self.max_connections} connections to redis "
                f"{self.server_label} stayed busy for {self.connect_timeout:g} s; raise OPTIONS "
                "max_connections, or find what holds them"
            ) from exc
        self.breaker.trip(exc)

    def invalidation(self, key: Hashable, action: Callable[[], T]) -> T:
        """Run ``action`` (an invalidation); when the server is down or fails, it is replayed
        before the server serves reads again, and the call raises."""
        if self.breaker.down:
            self.backlog.defer(key, action)
            raise BackendUnavailable(self.unavailable)
        try:
            return action()
        except self.network_errors as exc:
            self.failed(exc)
            self.backlog.defer(key, action)
            raise

    def expire_ms(self, ttl: float | None) -> int:
        """PX of an entry living ``ttl`` seconds plus the stale window (0: never expires)."""
        if ttl is None:
            return 0
        return max(1, min(LONGEST_MS, math.ceil((ttl + self.stale) * 1000)))

    # region-wide -------------------------------------------------------------------------
    def _scan(self, client: Any, root: str) -> Iterator[bytes]:
        match = glob_escape(root) + "*"
        if self.cluster:
            yield from client.scan_iter(match=match, count=1000, target_nodes=client.PRIMARIES)
        else:
            yield from client.scan_iter(match=match, count=1000)

    def _entry_keys(self, client: Any, root: str) -> Iterator[bytes]:
        fleet = self.fleet_root.encode()
        for key in self._scan(client, root):
            if not key.startswith(fleet):
                yield key

    def remove(self, root: str) -> int:
        """Delete every entry key under ``root`` (``UNLINK`` in batches); how many."""

        def remove(client: Any) -> int:
            done, batch = 0, []
            for key in self._entry_keys(client, root):
                batch.append(key)
                if len(batch) >= 500:
                    done += self._unlink(client, batch)
                    batch = []
            if batch:
                done += self._unlink(client, batch)
            return done

        return self.invalidation(("remove", root), lambda: remove(self.client))

    def _unlink(self, client: Any, keys: list[bytes]) -> int:
        if self.cluster:  # keys of many slots: one UNLINK each, pipelined by node
            pipe = client.pipeline(transaction=False)
            for key in keys:
                pipe.unlink(key)
            return sum(pipe.execute())
        return int(client.unlink(*keys))

    def clear(self) -> None:
        self.remove(self.key_root + ":")

    def count(self) -> int | None:
        return self.guarded_call(lambda c: sum(1 for _ in self._entry_keys(c, self.key_root + ":")))

    def ping(self) -> bool:
        try:
            return bool(self.client.ping())
        except Exception:
            return False

    def waiting_client(self) -> Any:
        """A client of one connection of its own, for a blocking read (a log's ``wait``)."""
        return self._clients.make_client(self.location, {**self.options, "max_connections": 1})

    def sync_storage(self, name: str) -> Any:
        from .sync_log import RedisLog

        return RedisLog(self, name)

    def derive(self, region: str, identity: str) -> RedisStore:
        return RedisStore(region, self.location, self.options, identity=identity, signer=self.signer)

    def health(self) -> list[dict[str, Any]]:
        """The server's breaker (shared with every region on it) and this region's invalidations
        waiting for it, without touching the network."""
        return [{"server": self.server_label, **self.breaker.state(), "pending": len(self.backlog)}]

    def close(self) -> None:
        super().close()
        self.backlog.drop()
        self._clients.detach(self, self.server)
        if self._loop_connections is not None:
            self._loop_connections.close()
        try:
            self.client.close()
        except Exception:
            pass

    def after_fork(self) -> None:
        """A forked child gets a breaker of its own (redis-py's pools reset by themselves, on
        the pid; the client is rebuilt anyway, so no state of the parent's threads is kept). No
        connection is made here: a cluster's client is built at its first use
        (:class:`.client.LazyCluster`), so a cluster that is down does not fail the reset."""
        super().after_fork()
        self._connect()


#: The shape of a hit's commands (:meth:`RedisNamespaceManager._send` reads one reply for each),
#: sent as bytes packed once per key; a Cluster's are sent with their key instead.
_HIT: list[tuple[Any, ...]] = [("GET",), ("PTTL",)]


class _Scripts:
    """The region's Lua scripts, run by EVALSHA (loaded on first use, again after a restart)."""

    def __init__(self, client: Any, sources: dict[str, str]) -> None:
        self.release = client.register_script(sources["release"])
        self.take = client.register_script(sources["take"])
        self.store = client.register_script(sources["store"])
        self.append = client.register_script(sources["append"])


class RedisNamespaceManager(Backend):
    """One namespace of a Redis region."""

    store_class = RedisStore
    store: RedisStore

    def __init__(self, namespace: str, store: Any = None, **beaker_options: Any) -> None:
        super().__init__(namespace, store, **beaker_options)
        self.root = self.store.namespace_root(namespace)
        self.prefix = self.root + FORMAT
        self._wires: dict[Hashable, str] = {}
        self._hits: dict[Hashable, tuple[bytes, bytes]] = {}

    def wire_key(self, key: Hashable) -> str:
        wires = self._wires
        wire = wires.get(key)
        if wire is None:
            text = str(key)
            wire = guarded(self.prefix, text, KEY_LIMIT)
            if len(text) <= binding.MEMO_TEXT_LIMIT:
                if len(wires) >= binding.MEMO_SIZE:
                    wires.clear()
                wires[key] = wire
        return wire

    def _hit_command(self, key: Hashable) -> tuple[bytes, bytes]:
        """``(wire key encoded, GET + PTTL of it packed for the wire)``, memoized like the wire key."""
        hits = self._hits
        found = hits.get(key)
        if found is None:
            wire = self.wire_key(key)
            packed = self.store.pack([("GET", wire), ("PTTL", wire)])
            found = (wire.encode(), packed)
            if len(str(key)) <= binding.MEMO_TEXT_LIMIT:
                if len(hits) >= binding.MEMO_SIZE:
                    hits.clear()
                hits[key] = found
        return found

    def _send(self, commands: list[tuple[Any, ...]], packed: bytes | None = None) -> list[Any]:
        """The replies of ``commands``, sent together on one pooled connection (one round trip);
        a network failure marks the server down. ``packed``: the commands already packed."""
        store = self.store
        if store.breaker.down:
            raise BackendUnavailable(store.unavailable)
        client = store.client
        try:
            if store.cluster:
                return store._clients.cluster_send(client, commands)
            pool = client.connection_pool
            conn = pool.get_connection()
            try:
                conn.send_packed_command((packed,) if packed is not None else conn.pack_commands(commands))
                return [conn.read_response() for _ in commands]
            except BaseException:
                conn.disconnect()  # its replies may be half read: never reuse it
                raise
            finally:
                pool.release(conn)
        except store.network_errors as exc:
            store.failed(exc)
            raise

    def get_entry(self, key: Hashable) -> Entry | None:
        raw, packed = self._hit_command(key)
        # A Cluster routes each command by its key: no packed bytes there (pack() gives b"").
        data, left = self._send(_HIT, packed) if packed else self._send([("GET", raw), ("PTTL", raw)])
        return None if data is None else self._entry(raw, data, left)

    def _entry(self, raw: bytes, data: bytes, left: int) -> Entry | None:
        """The entry in a hit's ``GET`` reply (``data``, under the wire key ``raw``), given the
        ``PTTL`` reply ``left``: unsealed (raises :class:`RejectedEntry`), ``None`` for a
        placeholder, rebased (:meth:`_rebased`). The blocking and the loop's hit share it."""
        try:
            entry = unseal(self.store.signer, raw, data)
        except Placeholder:
            return None  # a computation of this key is under way elsewhere: a miss
        return self._rebased(entry, left)

    def _tagged_commands(self, key: Hashable, names: list[str]) -> tuple[str, list[tuple[Any, ...]]]:
        """``(wire key, commands)`` of a tagged hit: the entry's ``GET`` + ``PTTL`` and its tags'
        counters (one ``MGET``; one ``GET`` each on a cluster, whose keys lie in many slots)."""
        wire = self.wire_key(key)
        tag_keys = self.store.tags.keys(names)
        if self.store.cluster:
            return wire, [("GET", wire), ("PTTL", wire), *(("GET", k) for k in tag_keys)]
        return wire, [("GET", wire), ("PTTL", wire), ("MGET", *tag_keys)]

    def _tagged(self, wire: str, replies: list[Any]) -> tuple[Entry | None, list[int | None]]:
        """The entry and tag versions in the replies of :meth:`_tagged_commands`."""
        from .tags import as_int

        data, left = replies[0], replies[1]
        versions = [as_int(v) for v in (replies[2:] if self.store.cluster else replies[2])]
        if data is None:
            return None, versions
        try:
            return self._entry(wire.encode(), data, left), versions
        except RejectedEntry as exc:
            exc.tag_versions = versions
            raise

    def get_entry_tagged(self, key: Hashable, names: list[str]) -> tuple[Entry | None, list[int | None]]:
        """The entry and its tags' counters in one round trip."""
        wire, commands = self._tagged_commands(key, names)
        return self._tagged(wire, self._send(commands))

    # coroutines' hits (AsyncEntries) ---------------------------------------------------------
    async def _asend(self, data: bytes, replies: int) -> list[Any]:
        """:meth:`_send` on the running loop's own connection (:mod:`.aio`): same breaker."""
        store = self.store
        if store.breaker.down:
            raise BackendUnavailable(store.unavailable)
        try:
            return await store.loop_connections.pool().request(data, replies)
        except store.network_errors as exc:
            store.failed(exc)
            raise

    async def aget_entry(self, key: Hashable) -> Entry | None:
        """:meth:`get_entry` for coroutines (:class:`~regions.backends.contract.AsyncEntries`): the
        same ``GET`` + ``PTTL`` bytes on the running loop's connection, no I/O thread. Through
        Sentinel or a cluster, :meth:`get_entry` on the store's I/O threads instead."""
        store = self.store
        if not store.reads_on_loop:
            return await asyncio.get_running_loop().run_in_executor(store.executor, self.get_entry, key)
        raw, packed = self._hit_command(key)
        data, left = await self._asend(packed, 2)
        return None if data is None else self._entry(raw, data, left)

    async def aget_entry_tagged(
        self, key: Hashable, names: list[str]
    ) -> tuple[Entry | None, list[int | None]]:
        """:meth:`get_entry_tagged` for coroutines, on the loop as :meth:`aget_entry` is."""
        store = self.store
        if not store.reads_on_loop:
            loop = asyncio.get_running_loop()
            return await loop.run_in_executor(store.executor, self.get_entry_tagged, key, names)
        wire, commands = self._tagged_commands(key, names)
        return self._tagged(wire, await self._asend(store.pack(commands), len(commands)))

    def _rebased(self, entry: Any, left: int) -> Any:
        """``entry`` with its time rebased on this host's clock from the ms the server still keeps
        it (``left``), when the writer's time disagrees by more than :data:`CLOCKS_AGREE`."""
        if left < 0 or type(entry) is not tuple or len(entry) != 3 or type(entry[0]) is not float:
            return entry
        ttl = entry[1]
        if type(ttl) is not float and type(ttl) is not int:
            return entry
        written = time.time() - (self.store.expire_ms(ttl) - left) / 1000
        if -CLOCKS_AGREE <= entry[0] - written <= CLOCKS_AGREE:
            return entry
        return (written, ttl, entry[2])

    def _sealed(self, wire: str, entry: Entry) -> bytes:
        try:
            data = pickle.dumps(entry, pickle.HIGHEST_PROTOCOL)
        except Exception as exc:
            raise UnstorableValue(self.store.region, entry[2], exc) from exc
        return seal(self.store.signer, wire, data)

    def set_entry(self, key: Hashable, entry: Entry) -> None:
        wire = self.wire_key(key)
        data, ms = self._sealed(wire, entry), self.store.expire_ms(entry[1])
        self.store.guarded_call(lambda c: c.set(wire, data, px=ms or None))

    def lease(self, key: Hashable) -> tuple[str, bytes | None]:
        """``(wire key, lease)``: a placeholder set where the key is absent, else the SHA-1 of what
        is there (:mod:`.lease`). One round trip, on a miss only."""
        wire, store = self.wire_key(key), self.store
        ms = max(1, math.ceil(max(store.lock_timeout, LEASE_SECONDS) * 1000))
        mark = LEASE_MARK + secrets.token_hex(8).encode()
        held = store.guarded_call(lambda c: store.scripts.take(keys=[wire], args=[mark, ms], client=c))
        return wire, held

    def set_entry_leased(self, key: Hashable, entry: Entry, lease: tuple[str, bytes | None]) -> bool:
        """Compare-and-set: refused (``False``) when the key was deleted or written since the lease."""
        leased, held = lease
        wire = self.wire_key(key)
        if held is None or wire != leased:
            return False
        data, ms, store = self._sealed(wire, entry), self.store.expire_ms(entry[1]), self.store
        done = store.guarded_call(lambda c: store.scripts.store(keys=[wire], args=[held, data, ms], client=c))
        return bool(done)

    def delete_entry(self, key: Hashable) -> None:
        """Delete ``key``'s entry; when that fails it is replayed before the server serves reads."""
        wire = self.wire_key(key)
        self.store.invalidation(("delete", wire), lambda: self.store.client.delete(wire))

    def do_remove(self) -> None:
        self.store.remove(self.root)

    def down_since(self, key: Hashable) -> float | None:
        breaker = self.store.breaker
        return breaker.down_since if breaker.down else None

    def shared_lock(self, key: Hashable) -> Any:
        return self.update_lock(key) if self.store.distributed_lock else None

    def update_lock(self, key: Hashable) -> Any:
        from .lock import TokenLock

        if self.store.breaker.down:
            return None  # nothing to lock against: the value is computed here and not stored
        return TokenLock(self.store, "~lock:" + self.wire_key(key))
