"""An invalidation log (:mod:`regions.sync`) on memcached: ``<name>:__sync__`` and its records.

The counter and its records live on one node (the counter key's), so one ``get`` tells a process
whether anything happened and one ``get_many`` fetches what did. An append made while that node
is down is queued on its breaker and replayed before the node serves reads again.

A counter that holds no number (written by something else) is replaced by the look or the append
that finds it, with the time in µs: far above any counter made from the time in ms, so every
reader resets (:mod:`regions.sync.log`), and the append goes on.
"""

from __future__ import annotations

import functools
import itertools
import time
from typing import TYPE_CHECKING

from ...errors import BackendUnavailable, RegionError
from ...sync.log import RECORD_TTL
from ...throttle import shown
from .keys import safe_namespace
from .wire import as_int, not_a_number

if TYPE_CHECKING:
    from . import MemcachedStore
    from .nodes import Node

_appends = itertools.count()


_WHAT = ("invalidation log counter", "every process reading the log drops its local entries once")


def _replacement() -> int:
    """A counter for a log whose counter held no number: the time in µs, more than
    :data:`~regions.sync.log.MAX_GAP` above any counter made from the time in ms (every reader
    resets, and no record number in use is reused)."""
    return time.time_ns() // 1000


class MemcachedLog:
    """The log named ``name`` (the synced region's identity) on ``store``'s servers."""

    def __init__(self, store: MemcachedStore, name: str) -> None:
        self.store = store
        self.seq_key = safe_namespace(name, 200) + ":__sync__"

    @property
    def node(self) -> Node:
        return self.store.nodes.node_for(self.seq_key)  # looked up each time: rebuilt after a fork

    def _record_key(self, n: int) -> str:
        return f"{self.seq_key}:{n}"

    def head(self) -> int:
        node = self.node
        raw = node.call("get", self.seq_key)
        if raw is None:  # new, evicted or restarted: start above any value used before
            node.call("add", self.seq_key, str(time.time_ns() // 1_000_000).encode(), noreply=False)
            raw = node.call("get", self.seq_key)
        n = as_int(raw)
        if n is None and raw is not None:  # holds no number: replaced, then read back what won
            node.replace_non_number(self.seq_key, _replacement(), *_WHAT)
            raw = node.call("get", self.seq_key)
            n = as_int(raw)
        if n is None:
            raise RegionError(
                f"cache region {self.store.region!r}: the invalidation log counter {self.seq_key!r} on "
                f"memcached {node.label} holds {shown(raw)} even after it was replaced (evicted at once, "
                "or rewritten by something else); give memcached more memory (-m), or this region a "
                "server of its own"
            )
        return n

    def append(self, record: bytes) -> int:
        node = self.node
        action = functools.partial(self._append_on, node, record)
        if node.breaker.down:
            node.defer(("sync", next(_appends)), action)
            raise BackendUnavailable(node.unavailable)
        try:
            return action()
        except Exception:
            node.defer(("sync", next(_appends)), action)
            raise

    def _append_on(self, node: Node, record: bytes) -> int:
        try:
            n = node.direct("incr", self.seq_key, 1, noreply=False)
        except Exception as exc:
            if not not_a_number(exc):
                raise
            node.replace_non_number(self.seq_key, _replacement(), *_WHAT)
            n = node.direct("incr", self.seq_key, 1, noreply=False)
        if n is None:
            start = time.time_ns() // 1_000_000
            node.direct("add", self.seq_key, str(start).encode(), noreply=False)
            n = node.direct("incr", self.seq_key, 1, noreply=False)
        n = int(n)
        node.direct("set", self._record_key(n), record, expire=RECORD_TTL, noreply=False)
        return n

    def records(self, first: int, last: int) -> dict[int, bytes]:
        names = {self._record_key(n): n for n in range(first, last + 1)}
        found = self.node.call("get_many", list(names))
        return {names[k]: v for k, v in found.items() if k in names}
