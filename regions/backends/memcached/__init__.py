"""``memcached``: entries on one or more memcached servers, through pymemcache.

* One meta get (``mg``) per hit, one SET per uncontended miss: the entry tuple is pickled as one value, behind
  ``R1`` and a 32-byte tag over the key and the pickle (:mod:`regions.signing`), checked before
  anything is unpickled. Counters and parts travel as raw bytes; parts are checked against the
  digest in their (tagged) head (:mod:`.parts`).
* An entry's life does not depend on the writer's clock: the hit's ``mg`` also returns the seconds
  the server still keeps the item, and the entry's time is rebased on the reader's clock from them
  (:meth:`MemcachedStore.rebased`), within the server's whole second. Entries that
  never expire are served as written.
* Every entry's key holds the storage format (:data:`.entry_format.FORMAT`): an entry written in
  another format is never read, only missed.
* ``clear()`` and ``invalidate_all()`` bump generation counters that are part of every key, so
  nothing else on the server is touched (no ``flush_all``). Each process re-reads the counters at
  most every ``sync_interval`` seconds; its own clears take effect at once.
* A counter (generation, tag, invalidation log) that holds no number, written by something else
  under the region's keys, is replaced by the read or the bump that finds it, which counts as a
  bump; the log says what it held. It never blocks an invalidation.
* Lifetimes over 30 days are sent as absolute timestamps, as memcached requires; those are 32-bit,
  so a lifetime ending after 2038-01-19 03:14:07 UTC (:data:`LATEST_EXPIRY`) ends then instead,
  said once in the log (and by the settings check, W010). memcached would store nothing for it.
* Leases (:meth:`MemcachedNamespaceManager.lease`, misses only): a computation adds a
  placeholder (:data:`.entry_format.LEASE_MARK`, never unpickled, a miss for every reader) where the key is
  absent, then ``gets`` the key's cas unique; its store is a ``cas`` with it. A delete of the key
  by any process meanwhile makes that ``cas`` fail, so an obsolete value is never stored over an
  invalidation ("Scaling Memcache at Facebook", NSDI 2013). A hit costs the one ``mg`` it did.
* Coroutines' hits (:meth:`MemcachedNamespaceManager.aget_entry`, ``aget_entry_tagged``) send the
  same ``mg`` on the event loop, through a small pool per loop and server (:mod:`.aio`), with the
  same parser, signature check and breaker: no I/O thread. Their misses, leases and stores, and
  the parts of a split value, run on the store's I/O threads.
* Connections are pooled per server, at most ``max_connections`` whatever the number of threads;
  a server that fails is skipped until it answers again (:mod:`.nodes`,
  :mod:`regions.breaker`); invalidations that could not reach it are replayed first.

This module holds the store and the namespace manager; each holds its parts as collaborators:
:mod:`.nodes` (servers, key -> server, generation counters) over :mod:`.pool` (connections),
:mod:`.wire` (the hit path's commands on a pooled socket), :mod:`.aio` (the hit on the event
loop), :mod:`.keys` (valid memcached keys), :mod:`.tags` (``store.tags``), :mod:`.parts`
(``manager.parts``), :mod:`.batch` (``manager.batches``), :mod:`.lock` (``update_lock``) and
:mod:`.sync_log` (``store.sync_storage``).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import math
import pickle
import secrets
import time
from collections.abc import Hashable, Mapping, Sequence
from typing import Any

from pymemcache.client.base import Client
from pymemcache.exceptions import MemcacheServerError

from ... import binding
from ...errors import BackendUnavailable, UnstorableValue
from ...signing import RejectedEntry
from ...throttle import Throttle
from ..contract import LEASE_SECONDS, Backend, Entry, LogStorage, Store
from .batch import Batches
from .entry_format import FORMAT, LEASE_MARK, PICKLE_AT, Placeholder, seal, unseal
from .expiry import LATEST_EXPIRY, asked, expiry, longest_timeout
from .keys import guarded, safe_namespace
from .lock import AddLock
from .nodes import NETWORK_ERRORS, Node, Nodes, parse_servers
from .parts import HEAD_MARK, Head, Parts
from .sync_log import MemcachedLog
from .tags import MemcachedTags
from .wire import CounterReplies, as_int, get_tagged
from .wire import get as wire_get

log = logging.getLogger("regions")
#: Seconds within which the writer's clock and the age the server gives an entry are taken to
#: agree: the server counts whole seconds (its clock ticks once a second), so two agreeing clocks
#: differ by less than this, and a clock off by more is rebased to within it.
CLOCKS_AGREE = 1.0
#: The lease of a computation whose key was deleted while the lease was being taken: refused.
_VOID = ("", None)


def _seconds(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


class MemcachedStore(Store):
    """A memcached region: its servers (:attr:`nodes`), tag versions (:attr:`tags`) and options."""

    name = "memcached"
    needs_location = True
    signs = True
    key_limit = 250
    options_schema = {
        "connect_timeout": ((int, float), 1.0, "seconds to wait for a connection"),
        "timeout": ((int, float), 1.0, "seconds to wait for an answer"),
        "sync_interval": ((int, float), 1.0, "seconds between re-reads of other processes' clears"),
        "distributed_lock": ((bool,), False, "also lock creation across processes with memcached add"),
        "max_connections": ((int,), 32, "most connections per server, whatever the number of threads"),
        "retry_interval": ((int, float), 1.0, "seconds between probes of a server that failed"),
        "item_size": ((int,), 1_000_000, "largest value stored as one item; larger ones are split"),
    }

    retired_options = {
        "dead_timeout": "remove it: a server that fails is now skipped until a probe finds it "
        "answering, every retry_interval seconds (default 1)",
    }

    def __init__(self, region: str, location: Any, options: Any, **kwargs: Any) -> None:
        super().__init__(region, location, options, **kwargs)
        self.servers = parse_servers(location)
        get = self.options.get
        self.connect_timeout = float(get("connect_timeout", 1.0))
        self.timeout = float(get("timeout", 1.0))
        self.sync_interval = float(get("sync_interval", 1.0))
        self.distributed_lock = bool(get("distributed_lock", False))
        self.max_connections = max(1, int(get("max_connections", 32)))
        self.retry_interval = float(get("retry_interval", 1.0))
        self.item_size = max(1024, int(get("item_size", 1_000_000)))
        #: Key of the region-wide generation counter (the identity sets regions apart); namespaces
        #: add their own, under their namespace (which starts with the identity).
        self.generation_key = safe_namespace(self.identity, 150) + ":__generation__"
        self.cleared_at = 0.0  # monotonic time of this process's last clear()
        self.capped_said = False  # a lifetime past LATEST_EXPIRY was logged (once per region)
        self._asked: dict[float | None, float] = {}  # TIMEOUT -> expiry.asked(TIMEOUT, stale), for rebased
        #: Per kind of counter: which held no number, and what (:meth:`.nodes.Node.replace_non_number`).
        self.counter_logs: dict[str, Throttle] = {}
        self.nodes = Nodes(self, self.servers)  # rebuilt in a forked child: look it up each time
        self.tags: MemcachedTags = MemcachedTags(self)

    @classmethod
    def check_location(cls, location: Any) -> str | None:
        try:
            parse_servers(location)
        except ValueError as exc:
            return str(exc)
        return None

    def node_for(self, wire: str) -> Node:
        """The node holding ``wire``."""
        return self.nodes.node_for(wire)

    def counter_log(self, what: str) -> Throttle:
        """The throttled log of counters of kind ``what`` that held no number."""
        found = self.counter_logs.get(what)
        if found is None:
            found = self.counter_logs[what] = Throttle(f"cache region {self.region!r} (memcached): ")
        return found

    def namespace(self, namespace: str) -> MemcachedNamespaceManager:
        return MemcachedNamespaceManager(namespace, self)

    # generations --------------------------------------------------------------------------
    def read_generations(self, names: list[str]) -> list[int]:
        """Current values of the named counters (see :class:`.nodes.Nodes`)."""
        return self.nodes.read_generations(names)

    def bump(self, name: str) -> None:
        self.cleared_at = time.monotonic()  # this process re-reads its counters at once
        self.nodes.bump(name)

    def clear(self) -> None:
        self.bump(self.generation_key)

    def reread(self) -> None:
        self.cleared_at = time.monotonic()  # generation counters are read again at the next call

    def sync_storage(self, name: str) -> LogStorage:
        return MemcachedLog(self, name)

    def derive(self, region: str, identity: str) -> MemcachedStore:
        return MemcachedStore(region, self.location, self.options, identity=identity, signer=self.signer)

    def ping(self) -> bool:
        for server in self.servers:
            client = Client(server, connect_timeout=self.connect_timeout, timeout=self.timeout)
            try:
                client.version()
            except Exception:
                return False
            finally:
                client.close()
        return True

    def expire_arg(self, ttl: float | None) -> int:
        """memcached's expiry argument for an entry living ``ttl`` seconds (plus the stale window):
        seconds up to 30 days, a Unix time beyond (memcached's rule), at most :data:`LATEST_EXPIRY`."""
        expire = expiry(ttl, self.stale)
        if expire != LATEST_EXPIRY or self.capped_said:
            return expire
        now = int(time.time())
        if ttl is not None:
            self.capped_said = True
            log.warning(
                "cache region %r (memcached): TIMEOUT=%s s (or a call's timeout) plus stale %g s ends "
                "after 2038-01-19 03:14:07 UTC, the latest expiry memcached takes (a 32-bit Unix time); "
                "such entries are stored to expire then, in %.1f years. Set TIMEOUT below %d s, or to "
                "None to never expire",
                self.region, _seconds(ttl), self.stale, (LATEST_EXPIRY - now) / (365 * 24 * 3600),
                longest_timeout(self.stale, now),
            )
        return LATEST_EXPIRY

    def rebased(self, entry: Entry | None, left: int) -> Entry | None:
        """``entry`` with its time rebased on this host's clock: now, less the age that the server's
        seconds ``left`` of the item say it has. The writer's ``time.time()`` may be off by any
        amount (its own clock); the server counts the item's life on one clock for every reader.
        Exact to the server's whole second, never longer than written. Kept as written when it
        never expires (``left`` -1 or ``ttl`` None), is not an entry (the region rejects it), or
        when the two clocks agree within the server's resolution (:data:`CLOCKS_AGREE`: the
        writer's time is then the more precise, which sub-second lifetimes need)."""
        if left < 0 or type(entry) is not tuple or len(entry) != 3 or type(entry[0]) is not float:
            return entry
        ttl = entry[1]
        lived = self._asked.get(ttl)  # the seconds the server was asked to keep it, per TIMEOUT
        if lived is None:
            if type(ttl) is not float and type(ttl) is not int:
                return entry
            if len(self._asked) >= 64:  # a few TIMEOUTs per region; never grows without bound
                self._asked.clear()
            lived = self._asked[ttl] = asked(ttl, self.stale)
        written = time.time() - (lived - left)
        if -CLOCKS_AGREE <= entry[0] - written <= CLOCKS_AGREE:
            return entry
        return (written, ttl, entry[2])

    def item_too_large(self, size: int) -> ValueError:
        """The error for an item of ``size`` bytes that the server refused as too large."""
        return ValueError(
            f"region {self.region!r}: memcached refused an item of {size} bytes; lower "
            "OPTIONS item_size below the server's limit (memcached -I), or use a file region"
        )

    def close(self) -> None:
        super().close()
        pending = sum(len(node.backlog) for node in self.nodes.all)
        if pending:  # they die with this process: other processes may serve those keys' old values
            log.warning(
                "cache region %r closes with %d invalidation(s) that never reached memcached; "
                "the entries they named may be served until they expire (a clear() reaches them)",
                self.region, pending,
            )
        self.nodes.close()

    def after_fork(self) -> None:
        """A forked child never uses its parent's sockets (their replies would interleave)."""
        super().after_fork()
        self.nodes = Nodes(self, self.servers)

    def health(self) -> list[dict[str, Any]]:
        """State of each server's breaker (shared with every region on that server) and this
        region's invalidations waiting for it, without touching the network."""
        return [
            {"server": node.label, **node.breaker.state(), "pending": len(node.backlog)}
            for node in self.nodes.all
        ]


class MemcachedNamespaceManager(Backend):
    """One namespace of a memcached region: its entries, keyed under its generation counters."""

    store_class = MemcachedStore
    store: MemcachedStore

    def __init__(self, namespace: str, store: Any = None, **beaker_options: Any) -> None:
        super().__init__(namespace, store, **beaker_options)
        self._ns = safe_namespace(namespace, 160)
        self._ns_generation_key = self._ns + ":__generation__"
        self._current: tuple[str, dict[Hashable, str]] = ("", {})
        self._synced_at = -math.inf
        self._escalated: dict[int, int] = {}  # id(node) -> its outage during which this namespace was bumped
        self._tag_request = self.store.tags.request  # the tagged hit's counter keys, one hop away
        #: the last counters read by get_entry_tagged and their parsed versions, replaced whole (a
        #: tagged hit reads the same counters again and again)
        self._versions_seen: tuple[list[bytes | None], tuple[int | None, ...]] = ([], ())
        self._counters_seen = CounterReplies()  # the counters' last reply bytes, for get_tagged
        #: Values larger than one item, stored in parts.
        self.parts = Parts(self._ns, self.store)
        #: Many keys in one round trip per server.
        self.batches = Batches(self)

    def _generation(self) -> tuple[str, dict[Hashable, str]]:
        """``(namespace:F2.<region gen>.<namespace gen>, wire keys built under it)``.

        Re-read every ``sync_interval`` seconds (at once after a clear in this process). Prefix and
        memo live in one tuple so that a thread never pairs a new prefix with the old memo.
        """
        store = self.store
        now = time.monotonic()
        if now - self._synced_at < store.sync_interval and self._synced_at > store.cleared_at:
            return self._current
        region_gen, ns_gen = store.read_generations([store.generation_key, self._ns_generation_key])
        prefix = f"{self._ns}:{FORMAT}.{region_gen:x}.{ns_gen:x}"
        if prefix != self._current[0]:
            self._current = (prefix, {})
        self._synced_at = now
        return self._current

    def wire_key(self, key: Hashable) -> str:
        return self._wire(self._generation(), key)

    def _synced(self) -> tuple[str, dict[Hashable, str]] | None:
        """:meth:`_generation` when it needs no network read now, else ``None``."""
        current = self._current
        synced_at = self._synced_at
        store = self.store
        if time.monotonic() - synced_at < store.sync_interval and synced_at > store.cleared_at:
            return current
        return None

    def _wire(self, current: tuple[str, dict[Hashable, str]], key: Hashable) -> str:
        prefix, wires = current
        wire = wires.get(key)
        if wire is None:
            text = str(key)
            wire = guarded(prefix, text, MemcachedStore.key_limit)
            if len(text) <= binding.MEMO_TEXT_LIMIT:  # long keys are hashed anyway: never keep them alive
                if len(wires) >= binding.MEMO_SIZE:
                    wires.clear()
                wires[key] = wire
        return wire

    def get_entry(self, key: Hashable) -> Entry | None:
        wire = self.wire_key(key)
        store = self.store
        nodes = store.nodes
        node = nodes.single or nodes.node_for(wire)
        if node.breaker.down:
            raise BackendUnavailable(node.unavailable)
        raw = wire.encode()  # once: the GET and the tag both use the bytes
        pool = node.pool
        client = pool.acquire()
        try:
            hit = wire_get(client, raw)
        except NETWORK_ERRORS as exc:
            node.breaker.trip(exc)
            raise
        finally:
            pool.release(client)
        if hit is None:
            return None
        data, left = hit
        try:
            found = unseal(store.signer, raw, data)
        except Placeholder:
            return None  # a computation of this key is under way elsewhere: a miss
        if found[0] == HEAD_MARK:  # too large for one item: a head naming its parts
            found = self.parts.get(node, wire, found)
        return store.rebased(found, left)

    async def aget_entry(self, key: Hashable) -> Entry | None:
        """:meth:`get_entry` for coroutines (:class:`~regions.backends.contract.AsyncEntries`): the
        ``mg`` on the running loop's own connection (:mod:`.aio`), no I/O thread. What would block
        runs on the store's I/O threads instead: a re-read of the generation counters (every
        ``sync_interval`` seconds) and the parts of a value too large for one item."""
        store = self.store
        current = self._synced()
        if current is None:
            current = await asyncio.get_running_loop().run_in_executor(store.executor, self._generation)
        wire = self._wire(current, key)
        nodes = store.nodes
        node = nodes.single or nodes.node_for(wire)
        if node.breaker.down:
            raise BackendUnavailable(node.unavailable)
        raw = wire.encode()
        try:
            hit = await node.aio.pool().get(raw)
        except NETWORK_ERRORS as exc:
            node.breaker.trip(exc)
            raise
        if hit is None:
            return None
        data, left = hit
        try:
            found = unseal(store.signer, raw, data)
        except Placeholder:
            return None  # a computation of this key is under way elsewhere: a miss
        if found[0] == HEAD_MARK:  # a head naming its parts: read them on an I/O thread
            loop = asyncio.get_running_loop()
            found = await loop.run_in_executor(store.executor, self.parts.get, node, wire, found)
        return store.rebased(found, left)

    def get_entry_tagged(self, key: Hashable, names: list[str]) -> tuple[Entry | None, Sequence[int | None]]:
        """The entry and its tags' counters, read from the entry's server in one round trip
        (:func:`.wire.get_tagged`)."""
        wire = self.wire_key(key)
        store = self.store
        nodes = store.nodes
        node = nodes.single or nodes.node_for(wire)
        if node.breaker.down:
            raise BackendUnavailable(node.unavailable)
        raw = wire.encode()
        tag_keys, tail = self._tag_request(names)
        pool = node.pool
        client = pool.acquire()
        try:
            hit, values = get_tagged(client, raw, tag_keys, tail, self._counters_seen)
        except NETWORK_ERRORS as exc:
            node.breaker.trip(exc)
            raise
        finally:
            pool.release(client)
        seen = self._versions_seen  # (counters' bytes, their versions): the last read, whole
        if values is seen[0] or values == seen[0]:
            versions = seen[1]
        else:
            versions = tuple([  # as_int, with its common case (a short run of digits) written out
                int(v) if v is not None and len(v) < 19 and v.isdigit() else as_int(v) for v in values
            ])
            self._versions_seen = (values, versions)
        if hit is None:
            return None, versions
        data, left = hit
        try:
            entry = unseal(store.signer, raw, data)
        except Placeholder:
            return None, versions
        except RejectedEntry as exc:
            exc.tag_versions = versions
            raise
        if entry[0] == HEAD_MARK:
            entry = self.parts.get(node, wire, entry)
        return store.rebased(entry, left), versions

    async def aget_entry_tagged(
        self, key: Hashable, names: list[str]
    ) -> tuple[Entry | None, list[int | None]]:
        """:meth:`get_entry_tagged` for coroutines, on the loop as :meth:`aget_entry` is."""
        store = self.store
        current = self._synced()
        if current is None:
            current = await asyncio.get_running_loop().run_in_executor(store.executor, self._generation)
        wire = self._wire(current, key)
        nodes = store.nodes
        node = nodes.single or nodes.node_for(wire)
        if node.breaker.down:
            raise BackendUnavailable(node.unavailable)
        raw = wire.encode()
        tag_keys, tail = self._tag_request(names)
        try:
            hit, values = await node.aio.pool().get_tagged(raw, tag_keys, tail)
        except NETWORK_ERRORS as exc:
            node.breaker.trip(exc)
            raise
        versions = [as_int(v) for v in values]
        if hit is None:
            return None, versions
        data, left = hit
        try:
            entry = unseal(store.signer, raw, data)
        except Placeholder:
            return None, versions
        except RejectedEntry as exc:
            exc.tag_versions = versions
            raise
        if entry[0] == HEAD_MARK:
            loop = asyncio.get_running_loop()
            entry = await loop.run_in_executor(store.executor, self.parts.get, node, wire, entry)
        return store.rebased(entry, left), versions

    def create_tags(self, key: Hashable, names: list[str]) -> list[int]:
        """The counters of ``names`` on the server of ``key``'s entry, created where missing."""
        store = self.store
        return store.tags.create_on(store.node_for(self.wire_key(key)), names)

    def pack(self, wire: str, node: Node, entry: Entry) -> tuple[bytes, int, tuple[Any, ...] | None]:
        """``(sealed item, expire argument, head or None)`` of ``entry``; a value too large for one
        item is written in parts first (:mod:`.parts`) and the item is their head."""
        store = self.store
        expire = store.expire_arg(entry[1])
        try:
            data = pickle.dumps(entry, pickle.HIGHEST_PROTOCOL)
        except Exception as exc:
            raise UnstorableValue(store.region, entry[2], exc) from exc
        head = None
        if len(data) + PICKLE_AT > store.item_size:
            head = self.parts.put(node, wire, data, expire)
            data = pickle.dumps(head, pickle.HIGHEST_PROTOCOL)
        return seal(self.store.signer, wire, data), expire, head

    def _store(self, node: Node, method: str, wire: str, data: bytes, *args: Any, expire: int) -> Any:
        try:
            return node.call(method, wire, data, *args, expire=expire, noreply=False)
        except MemcacheServerError as exc:
            if b"too large" not in str(exc).encode():
                raise
            raise self.store.item_too_large(len(data)) from exc

    def set_entry(self, key: Hashable, entry: Entry) -> None:
        wire = self.wire_key(key)
        node = self.store.node_for(wire)
        data, expire, _head = self.pack(wire, node, entry)
        self._store(node, "set", wire, data, expire=expire)

    # batches: one round trip per server (:mod:`.batch`) --------------------------------------
    def get_entries(
        self, keys: Sequence[Hashable]
    ) -> tuple[dict[Hashable, Entry | RejectedEntry], Exception | None]:
        return self.batches.get_entries(keys)

    def set_entries(self, entries: Mapping[Hashable, Entry]) -> tuple[list[Hashable], Exception | None]:
        return self.batches.set_entries(entries)

    def delete_entries(self, keys: Sequence[Hashable]) -> tuple[list[Hashable], Exception | None]:
        return self.batches.delete_entries(keys)

    def lease(self, key: Hashable) -> tuple[str, bytes | None]:
        """``(wire key, cas unique)``: of a placeholder added where the key is absent, else of the
        item there (an expired entry, another computation's placeholder). Two round trips, on a
        miss only. The placeholder lives :data:`~regions.backends.contract.LEASE_SECONDS` (or
        ``lock_timeout`` if longer): a computation that outlasts it is not stored."""
        wire, store = self.wire_key(key), self.store
        node = store.node_for(wire)
        expire = max(1, math.ceil(max(store.lock_timeout, LEASE_SECONDS)))
        node.call("add", wire, LEASE_MARK + secrets.token_hex(8).encode(), expire=expire, noreply=False)
        data, cas = node.call("gets", wire)
        if data is None:  # deleted between the two: an invalidation came first, the lease is void
            return _VOID
        return wire, cas

    def set_entry_leased(self, key: Hashable, entry: Entry, lease: tuple[str, bytes | None]) -> bool:
        """``cas`` with the lease's unique: refused (``False``) when the key was deleted or written
        since the lease, or its namespace or region invalidated (another wire key now)."""
        leased, cas = lease
        wire = self.wire_key(key)
        if cas is None or wire != leased:
            return False
        node = self.store.node_for(wire)
        data, expire, head = self.pack(wire, node, entry)
        if self._store(node, "cas", wire, data, cas, expire=expire):
            return True
        if head is not None:  # its parts are nobody's: remove them now rather than at their expiry
            with contextlib.suppress(Exception):
                node.call("delete_many", self.parts.keys(wire, Head.read(head)), noreply=False)  # type: ignore[arg-type]
        return False

    def delete_entry(self, key: Hashable) -> None:
        """Delete ``key``'s entry; when that fails it is retried before the node serves reads again.

        When not even the key can be built (no counter readable), the whole namespace is bumped.
        """
        try:
            wire = self.wire_key(key)
        except Exception:
            self.defer_remove()
            raise
        node = self.store.node_for(wire)
        if node.breaker.down:
            self.defer_deletes(node, [wire])
            raise BackendUnavailable(node.unavailable)
        try:
            node.direct("delete", wire, noreply=False)
        except Exception:
            self.defer_deletes(node, [wire])
            raise

    def defer_deletes(self, node: Node, wires: list[str]) -> None:
        """The deletes of ``wires``, which did not reach ``node``: replayed before it serves reads
        again, and in a cluster this namespace bumped on the nodes that answer (:meth:`_escalate`)."""
        for wire in wires:
            node.defer(("delete", wire), functools.partial(node.direct, "delete", wire, noreply=False))
        self._escalate(node)

    def defer_remove(self) -> None:
        """This namespace's bump (:meth:`do_remove`), replayed on every node before it serves reads
        again: it stands for deletes whose keys could not be built (no generation counter read)."""
        self.store.nodes.defer_bump(self._ns_generation_key)

    def _escalate(self, node: Node) -> None:
        """A key's delete waits for its node, and other processes could read the old entry from it
        the moment it returns, before this process replays the delete. In a cluster, this namespace
        is bumped on the nodes that answer (counters are read as their maximum): every process drops
        its entries within ``sync_interval``. Once per outage of the node."""
        nodes = self.store.nodes
        if nodes.single or self._escalated.get(id(node)) == node.breaker.outages:
            return
        self._escalated[id(node)] = node.breaker.outages
        try:
            nodes.bump(self._ns_generation_key)
        except Exception:
            pass  # no node answers: the deferred delete is all there is (and the bump is deferred too)

    def do_remove(self) -> None:
        self.store.bump(self._ns_generation_key)

    def down_since(self, key: Hashable) -> float | None:
        nodes = self.store.nodes
        node = nodes.single
        if node is None:
            current = self._synced()
            if current is None:  # which node holds it needs a read of the namespace's generation
                return None
            node = nodes.node_for(self._wire(current, key))
        breaker = node.breaker
        return breaker.down_since if breaker.down else None

    def shared_lock(self, key: Hashable) -> AddLock | None:
        return self.update_lock(key) if self.store.distributed_lock else None

    def update_lock(self, key: Hashable) -> AddLock | None:
        wire = self.wire_key(key)
        node = self.store.node_for(wire)
        if node.breaker.down:
            return None  # nothing to lock against: the value is computed here and not stored
        name = guarded("lock", wire, MemcachedStore.key_limit)
        return AddLock(self.store.lock_timeout, node, name)
