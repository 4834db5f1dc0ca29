"""Tag versions of a memcached region (:mod:`regions.tags`): one counter per tag on every server.

* A hit reads the entry and the counters of its tags from the entry's server in one ``get_many``
  (:meth:`~regions.backends.memcached.MemcachedNamespaceManager.get_entry_tagged`, with the keys of
  :meth:`MemcachedTags.raw_keys`): no extra round trip. Each server's counters only ever judge the
  entries on that server, so servers need not agree on the values: a version is compared for
  equality, never ordered.
* ``invalidate_tags`` increments the counters on every server (``incr``: atomic across processes
  and hosts). A server that is down gets the increment when it answers again, before any read
  reaches it (the breaker's replay, as for generation counters). A counter that is missing is not
  created by a bump: entries carrying it miss anyway.
* A missing counter (never made, evicted, a restarted server) is a miss; the miss creates it
  (``add`` of the time in µs, new for every creation) before the value is computed.
* A counter that holds no number (written by something else) is a miss too, and is replaced by a
  new version by the read or the bump that finds it (:meth:`.nodes.Node.replace_non_number`): a
  bump never stops at it, and the tags after it are bumped all the same.
"""

from __future__ import annotations

import functools
import time
from typing import TYPE_CHECKING, Any

from ...errors import BackendUnavailable
from .keys import guarded, safe_namespace
from .nodes import NETWORK_ERRORS
from .wire import as_int, counters_request, incr_many

if TYPE_CHECKING:
    from . import MemcachedStore
    from .nodes import Node

_KEY_LIMIT = 250
_MEMO = 4096


class MemcachedTags:
    """A store's tag versions (:class:`~regions.backends.contract.TagVersions`): each tag's own
    server (by its counter key) answers :meth:`read` and :meth:`create`; :meth:`bump` reaches all."""

    def __init__(self, store: MemcachedStore) -> None:
        self.store = store
        #: Counter keys live under the region's identity, so regions never share one.
        self.prefix = safe_namespace(store.identity, 150) + ":__tag__"
        self._keys: dict[str, str] = {}
        self._raw_keys: dict[tuple[str, ...], tuple[list[bytes], bytes]] = {}

    def keys(self, names: list[str]) -> list[str]:
        """The counter key of each tag."""
        memo, out = self._keys, []
        for name in names:
            key = memo.get(name)
            if key is None:
                key = guarded(self.prefix, name, _KEY_LIMIT)
                if len(memo) >= _MEMO:
                    memo.clear()
                memo[name] = key
            out.append(key)
        return out

    def raw_keys(self, names: list[str]) -> list[bytes]:
        """:meth:`keys`, encoded (the hit path's form)."""
        return self.request(names)[0]

    def request(self, names: list[str] | tuple[str, ...]) -> tuple[list[bytes], bytes]:
        """:meth:`raw_keys` and the commands that read them (:func:`.wire.counters_request`): the
        tagged hit's (:func:`.wire.get_tagged`), made once per set of names."""
        memo = self._raw_keys
        names_key = tuple(names)
        found = memo.get(names_key)
        if found is None:
            raw = [key.encode() for key in self.keys(list(names))]
            found = (raw, counters_request(raw))
            if len(memo) >= _MEMO:
                memo.clear()
            memo[names_key] = found
        return found

    def read(self, names: list[str]) -> list[int | None]:
        keys = self.keys(names)
        found: dict[str, Any] = {}
        for node, some in self._by_node(keys).items():
            found.update(node.call("get_many", some))
        return [as_int(found.get(key)) for key in keys]

    def create(self, names: list[str]) -> list[int]:
        keys = self.keys(names)
        found: dict[str, int] = {}
        for node, some in self._by_node(keys).items():
            found.update(zip(some, _create_on(node, some), strict=True))
        return [found[key] for key in keys]

    def create_on(self, node: Node, names: list[str]) -> list[int]:
        """The counters of ``names`` on ``node`` (an entry's server), created where missing."""
        return _create_on(node, self.keys(names))

    def bump(self, names: list[str]) -> None:
        """``incr`` each counter on every server; a server not reached gets it when it answers
        again. Raises :class:`BackendUnavailable` when some server was not reached."""
        raw = [key.encode() for key in self.keys(names)]
        store = self.store
        missed: list[str] = []
        for node in store.nodes.all:
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
                f"cache region {store.region!r}: tag invalidation not delivered to memcached "
                f"{', '.join(missed)} yet; it is replayed before that server serves reads again"
            )

    def _by_node(self, keys: list[str]) -> dict[Node, list[str]]:
        groups: dict[Node, list[str]] = {}
        node_for = self.store.nodes.node_for  # looked up each time: the nodes are rebuilt after a fork
        for key in keys:
            groups.setdefault(node_for(key), []).append(key)
        return groups


def _new_version() -> int:
    return time.time_ns() // 1000


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
    for key in damaged:  # no number: a new version, so entries carrying it miss
        node.replace_non_number(key.decode(), _new_version(), "tag counter")


def _create_on(node: Node, keys: list[str]) -> list[int]:
    """The counters ``keys`` on ``node``, created where missing (another process may win the add)."""
    for key in keys:
        node.call("add", key, str(_new_version()).encode(), noreply=False)
    found = node.call("get_many", keys)
    versions = [as_int(found.get(key)) for key in keys]
    for i, key in enumerate(keys):
        if versions[i] is None and key in found:  # holds no number (written by something else)
            node.replace_non_number(key, _new_version(), "tag counter")
            versions[i] = as_int(node.call("get", key))  # ours, or another process's replacement
    if None in versions:  # evicted at once: a full server; the entry is computed but not stored
        raise BackendUnavailable(f"{node.label}: tag counters are evicted as soon as they are made")
    return [v for v in versions if v is not None]
