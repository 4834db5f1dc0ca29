"""Tag versions of a memcached region (:mod:`regions.tags`): one counter per tag on every server.

* A hit reads the entry and the counters of its tags from the entry's server in one ``get_many``:
  no extra round trip. Each server's counters only ever judge the entries on that server, so
  servers need not agree on the values: a version is compared for equality, never ordered.
* ``invalidate_tags`` increments the counters on every server (``incr``: atomic across processes
  and hosts). A server that is down gets the increment when it answers again, before any read
  reaches it (the breaker's replay, as for generation counters). A counter that is missing is not
  created by a bump: entries carrying it miss anyway.
* A missing counter (never made, evicted, a restarted server) is a miss; the miss creates it
  (``add`` of the time in µs, new for every creation) before the value is computed.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Hashable
from typing import TYPE_CHECKING, Any

from ...errors import BackendUnavailable
from ...signing import RejectedEntry
from ..contract import Entry
from .keys import guarded, safe_namespace
from .nodes import NETWORK_ERRORS
from .parts import _Chunked
from .wire import get_many, incr_many

if TYPE_CHECKING:
    from . import MemcachedNamespaceManager, MemcachedStore
    from .nodes import Node

_KEY_LIMIT = 250
_MEMO = 4096


def _as_int(raw: Any) -> int | None:
    try:
        return int(raw)
    except (TypeError, ValueError):
        return None


def _new_version() -> bytes:
    return str(time.time_ns() // 1000).encode()


class MemcachedTagStore:
    """Mixed into :class:`~regions.backends.memcached.MemcachedStore`."""

    def tag_keys(self: MemcachedStore, names: list[str]) -> list[str]:  # type: ignore[misc]
        """The counter key of each tag: under the region's identity, so regions never share one."""
        memo: dict[str, str] | None = self.__dict__.get("_tag_keys")
        if memo is None:
            memo = self.__dict__["_tag_keys"] = {}
        prefix = safe_namespace(self.identity, 150) + ":__tag__"
        out = []
        for name in names:
            key = memo.get(name)
            if key is None:
                key = guarded(prefix, name, _KEY_LIMIT)
                if len(memo) >= _MEMO:
                    memo.clear()
                memo[name] = key
            out.append(key)
        return out

    def tag_raw_keys(self: MemcachedStore, names: list[str]) -> list[bytes]:  # type: ignore[misc]
        """:meth:`tag_keys`, encoded (the hit path's form)."""
        memo: dict[tuple[str, ...], list[bytes]] | None = self.__dict__.get("_tag_raw_keys")
        if memo is None:
            memo = self.__dict__["_tag_raw_keys"] = {}
        names_key = tuple(names)
        raw = memo.get(names_key)
        if raw is None:
            raw = [key.encode() for key in self.tag_keys(names)]
            if len(memo) >= _MEMO:
                memo.clear()
            memo[names_key] = raw
        return raw

    # store-level contract: each tag's own server (by its key) answers for it --------------------
    def read_tags(self: MemcachedStore, names: list[str]) -> list[int | None]:  # type: ignore[misc]
        keys = self.tag_keys(names)
        found: dict[str, Any] = {}
        for node, some in _by_node(self, keys).items():
            found.update(node.call("get_many", some))
        return [_as_int(found.get(key)) for key in keys]

    def create_tags(self: MemcachedStore, names: list[str]) -> list[int]:  # type: ignore[misc]
        keys = self.tag_keys(names)
        found: dict[str, int] = {}
        for node, some in _by_node(self, keys).items():
            found.update(zip(some, create_on(node, some), strict=True))
        return [found[key] for key in keys]

    def bump_tags(self: MemcachedStore, names: list[str]) -> None:  # type: ignore[misc]
        """``incr`` each counter on every server; a server not reached gets it when it answers
        again. Raises :class:`BackendUnavailable` when some server was not reached."""
        keys = self.tag_keys(names)
        raw = [key.encode() for key in keys]
        missed: list[str] = []
        for node in self.nodes.all:
            if not node.breaker.down:
                try:
                    _incr_on(node, raw)
                    continue
                except NETWORK_ERRORS:
                    pass  # the node is marked down now: replayed (all of them) when it answers
            for key in raw:
                node.defer(("tag", key), functools.partial(_incr_on, node, [key]))
            missed.append(node.label)
        if missed:
            raise BackendUnavailable(
                f"cache region {self.region!r}: tag invalidation not delivered to memcached "
                f"{', '.join(missed)} yet; it is replayed before that server serves reads again"
            )


def _incr_on(node: Node, keys: list[bytes]) -> None:
    """``incr`` of every key on ``node``, pipelined (one round trip per few hundred keys)."""
    pool = node.pool
    client = pool.acquire()
    try:
        damaged = incr_many(client, keys)
    except NETWORK_ERRORS as exc:
        node.breaker.trip(exc)
        raise
    finally:
        pool.release(client)
    for key in damaged:  # no number: removed, so entries carrying it miss (and a miss makes it anew)
        node.direct("delete", key.decode(), noreply=False)


def _by_node(store: MemcachedStore, keys: list[str]) -> dict[Node, list[str]]:
    groups: dict[Node, list[str]] = {}
    for key in keys:
        groups.setdefault(store.node_for(key), []).append(key)
    return groups


def create_on(node: Node, keys: list[str]) -> list[int]:
    """The counters ``keys`` on ``node``, created where missing (another process may win the add)."""
    for key in keys:
        node.call("add", key, _new_version(), noreply=False)
    found = node.call("get_many", keys)
    versions = [_as_int(found.get(key)) for key in keys]
    for i, key in enumerate(keys):
        if versions[i] is None and key in found:  # holds no number (written by something else)
            node.call("set", key, _new_version(), noreply=False)
            versions[i] = _as_int(node.call("get", key))
    if None in versions:  # evicted at once: a full server; the entry is computed but not stored
        raise BackendUnavailable(f"{node.label}: tag counters are evicted as soon as they are made")
    return versions  # type: ignore[return-value]


class MemcachedTaggedEntries:
    """Mixed into :class:`~regions.backends.memcached.MemcachedNamespaceManager`."""

    def get_entry_tagged(  # type: ignore[misc]
        self: MemcachedNamespaceManager, key: Hashable, names: list[str]
    ) -> tuple[Entry | None, list[int | None]]:
        """The entry and its tags' counters, read from the entry's server in one ``get_many``."""
        wire = self.wire_key(key)
        store = self.store
        nodes = store.nodes
        node = nodes.single or nodes.node_for(wire)
        if node.breaker.down:
            raise BackendUnavailable(node.unavailable)
        raw = wire.encode()
        tag_keys = store.tag_raw_keys(names)
        pool = node.pool
        client = pool.acquire()
        try:
            found = get_many(client, [raw, *tag_keys])
        except NETWORK_ERRORS as exc:
            node.breaker.trip(exc)
            raise
        finally:
            pool.release(client)
        versions = [_as_int(found.get(k)) for k in tag_keys]
        data = found.get(raw)
        if data is None:
            return None, versions
        try:
            entry = self._unseal(raw, data)
        except RejectedEntry as exc:
            exc.tag_versions = versions  # type: ignore[attr-defined]
            raise
        if isinstance(entry, _Chunked):
            return self._get_chunks(node, wire, entry), versions
        return entry, versions

    def create_tags(self: MemcachedNamespaceManager, key: Hashable, names: list[str]) -> list[int]:  # type: ignore[misc]
        """The counters of ``names`` on the server of ``key``'s entry, created where missing."""
        wire = self.wire_key(key)
        return create_on(self.store.node_for(wire), self.store.tag_keys(names))


class StoreTags:
    """The store's tag versions as :class:`~regions.backends.contract.TagVersions` (``store.tags``)."""

    def __init__(self, store: Any) -> None:
        self.store = store

    def read(self, names: list[str]) -> list[int | None]:
        return self.store.read_tags(names)

    def create(self, names: list[str]) -> list[int]:
        return self.store.create_tags(names)

    def bump(self, names: list[str]) -> None:
        self.store.bump_tags(names)
