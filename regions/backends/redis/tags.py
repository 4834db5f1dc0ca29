"""Tag versions of a Redis region (:mod:`regions.tags`): one counter per tag.

* A tagged hit reads the entry and its tags' counters in the same round trip
  (:meth:`~regions.backends.redis.RedisNamespaceManager.get_entry_tagged`, keys from
  :meth:`RedisTags.keys`).
* A missing counter (never made, a restarted server) is a miss; the miss creates it
  (``SET NX`` of the time in µs, new for every creation) before the value is computed.
* ``bump`` is ``INCR`` (atomic across processes and hosts). A counter that holds no number
  (written by something else) is replaced by a new version: a bump never stops at it.
* A version is compared for equality, never ordered.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from ..wire_keys import guarded, safe_namespace

if TYPE_CHECKING:
    from . import RedisStore

_KEY_LIMIT = 250
_MEMO = 4096


def as_int(raw: Any) -> int | None:
    """A counter's value, ``None`` when missing or not a number."""
    if raw is None:
        return None
    try:
        return int(raw)
    except (TypeError, ValueError):
        return None


def new_version() -> int:
    return time.time_ns() // 1000


class RedisTags:
    """A store's tag versions (:class:`~regions.backends.contract.TagVersions`)."""

    def __init__(self, store: RedisStore) -> None:
        self.store = store
        #: Outside the region's entry keys (``clear()`` scans those), under its identity.
        self.prefix = "~tag:" + safe_namespace(store.identity, 150)
        self._keys: dict[tuple[str, ...], list[str]] = {}

    def keys(self, names: list[str]) -> list[str]:
        """The counter key of each tag (memoized per list of names: the hit path's form)."""
        names_key = tuple(names)
        found = self._keys.get(names_key)
        if found is None:
            found = [guarded(self.prefix, name, _KEY_LIMIT) for name in names]
            if len(self._keys) >= _MEMO:
                self._keys.clear()
            self._keys[names_key] = found
        return found

    def read(self, names: list[str]) -> list[int | None]:
        return self.store.guarded_call(lambda c: [as_int(v) for v in self._mget(c, self.keys(names))])

    def create(self, names: list[str]) -> list[int]:
        keys = self.keys(names)

        def create(client: Any) -> list[int]:
            pipe = client.pipeline(transaction=False)  # one round trip (per node of a cluster)
            for key in keys:
                pipe.set(key, new_version(), nx=True)
            for key in keys:
                pipe.get(key)
            versions = [as_int(v) for v in pipe.execute()[len(keys):]]
            for i, key in enumerate(keys):
                if versions[i] is None:  # holds no number (written by something else): a new one
                    version = new_version()
                    client.set(key, version)
                    versions[i] = version
            return [v for v in versions if v is not None]

        return self.store.guarded_call(create)

    def bump(self, names: list[str]) -> None:
        keys = self.keys(names)

        def bump(client: Any) -> None:
            if self.store.cluster:  # a network error raised at once, never taken for a bad counter
                replies = self.store._clients.cluster_send(client, [("INCR", key) for key in keys], False)
            else:
                pipe = client.pipeline(transaction=False)
                for key in keys:
                    pipe.incr(key)
                replies = pipe.execute(raise_on_error=False)
            for key, reply in zip(keys, replies, strict=True):
                if isinstance(reply, Exception):  # no number: a new version, so entries carrying it miss
                    client.set(key, new_version())

        store = self.store
        store.invalidation(("tags", tuple(keys)), lambda: bump(store.client))

    def _mget(self, client: Any, keys: list[str]) -> list[Any]:
        if self.store.cluster:  # keys of several slots: one pipeline, grouped by node
            return self.store._clients.cluster_send(client, [("GET", key) for key in keys])
        return list(client.mget(keys))
