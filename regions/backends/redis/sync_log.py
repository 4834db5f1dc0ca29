"""An invalidation log (:mod:`regions.sync`) on Redis: a counter and a STREAM of records.

* ``head`` is the counter (``GET``; made from the time in ms when missing, so above any value a
  log of that name used before: readers of a restarted server reset).
* ``append`` is one script: ``INCR`` of the counter, then ``XADD`` of the record under the stream
  id ``<seq>-1``; the stream keeps at least :data:`~regions.sync.log.MAX_GAP` records
  (``MAXLEN ~``). A counter that went below the stream's last id (rewritten by something else) is
  raised above it: readers see a gap, and reset.
* ``records`` is one ``XRANGE``; :meth:`RedisLog.wait` blocks on ``XREAD BLOCK`` until a record
  after a given ``seq`` exists (the push path, :mod:`regions.sync.push`; polling needs only the
  first three). It waits on a connection of its own (one client of one connection per log and
  process, made in the process that waits), never on one the hits' pool lends: a blocked read
  never keeps a hit waiting for a connection. Its failures mark the server down like any other.
* Counter and stream share a hash tag, so both are in one slot of a Redis Cluster (the script
  touches both).
* An append made while the server is down is queued on its breaker and replayed before the server
  serves reads again.
"""

from __future__ import annotations

import functools
import itertools
import os
import time
from typing import TYPE_CHECKING, Any

from ...errors import BackendUnavailable
from ...sync.log import MAX_GAP
from ..wire_keys import digest

if TYPE_CHECKING:
    from . import RedisStore

_appends = itertools.count()

#: KEYS[1] counter, KEYS[2] stream; ARGV[1] the record, ARGV[2] a start (time in ms), ARGV[3] MAXLEN.
APPEND = """
if redis.call('EXISTS', KEYS[1]) == 0 then
    redis.call('SET', KEYS[1], ARGV[2])
end
local ok, seq = pcall(redis.call, 'INCR', KEYS[1])
if not ok then
    redis.call('SET', KEYS[1], ARGV[2])
    seq = redis.call('INCR', KEYS[1])
end
local added = pcall(redis.call, 'XADD', KEYS[2], 'MAXLEN', '~', ARGV[3], seq .. '-1', 'r', ARGV[1])
if not added then
    local last = redis.call('XREVRANGE', KEYS[2], '+', '-', 'COUNT', 1)
    local top = tonumber(string.match(last[1][1], '^(%d+)'))
    redis.call('SET', KEYS[1], top + 1)
    seq = top + 1
    redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[3], seq .. '-1', 'r', ARGV[1])
end
return seq
"""


def _seq(stream_id: Any) -> int:
    text = stream_id.decode() if isinstance(stream_id, bytes) else str(stream_id)
    return int(text.partition("-")[0])


class RedisLog:
    """The log named ``name`` (the synced region's identity) on ``store``'s server.

    Implements :class:`~regions.backends.contract.LogStorage`, and its optional :meth:`wait`."""

    def __init__(self, store: RedisStore, name: str) -> None:
        self.store = store
        slot = "{" + digest(name)[:24] + "}"  # one slot for both keys; braces of the name never count
        self.seq_key = f"~sync:{slot}:seq"
        self.stream_key = f"~sync:{slot}:records"
        #: The client :meth:`wait` blocks on, and the process it was made in.
        self._waiting: Any = None
        self._waiting_pid = 0

    def head(self) -> int:
        def head(client: Any) -> int:
            raw = client.get(self.seq_key)
            if raw is None:  # new or restarted: start above any value used before
                client.set(self.seq_key, time.time_ns() // 1_000_000, nx=True)
                raw = client.get(self.seq_key)
            try:
                return int(raw)
            except (TypeError, ValueError):  # holds no number: replaced, every reader resets
                client.set(self.seq_key, time.time_ns() // 1000)
                return int(client.get(self.seq_key))

        return int(self.store.guarded_call(head))

    def append(self, record: bytes) -> int:
        action = functools.partial(self._append, record)
        return int(self.store.invalidation(("sync", next(_appends)), action))

    def _append(self, record: bytes) -> int:
        start = time.time_ns() // 1_000_000
        return int(self.store.scripts.append(keys=[self.seq_key, self.stream_key],
                                             args=[record, start, MAX_GAP]))

    def records(self, first: int, last: int) -> dict[int, bytes]:
        found = self.store.guarded_call(lambda c: c.xrange(self.stream_key, f"{first}-0", f"{last}-1"))
        return {_seq(stream_id): fields[b"r"] for stream_id, fields in found if b"r" in fields}

    def _read_after(self, after: int, block: int) -> Any:
        store = self.store
        if store.breaker.down:  # the breaker's probe says when to try again
            raise BackendUnavailable(store.unavailable)
        try:
            client = self._waiting
            if client is None or self._waiting_pid != os.getpid():  # a forked child: never the parent's
                client = self._waiting = store.waiting_client()  # (a cluster's asks for its slots)
                self._waiting_pid = os.getpid()
            return client.xread({self.stream_key: f"{after}-1"}, count=1, block=block)
        except store.network_errors as exc:
            self.close_waiting()  # a read cut short leaves its reply unread: a new connection
            store.failed(exc)
            raise

    def close_waiting(self) -> None:
        """Close the client :meth:`wait` blocks on (the waiting thread ends, or its read failed)."""
        client, self._waiting = self._waiting, None
        if client is not None and self._waiting_pid == os.getpid():
            try:
                client.close()
            except Exception:
                pass

    def wait(self, after: int, timeout: float) -> bool:
        """Block until a record after ``after`` exists, or ``timeout`` seconds pass (``XREAD
        BLOCK``, in slices shorter than the socket timeout); whether one exists. Optional in
        :class:`~regions.backends.contract.LogStorage`: a log reader may wait on it instead of
        polling."""
        deadline = time.monotonic() + timeout
        piece = max(0.001, self.store.socket_timeout / 2)
        while True:
            left = deadline - time.monotonic()
            block = max(1, int(min(left, piece) * 1000))
            found = self._read_after(after, block)
            if found:
                return True
            if deadline - time.monotonic() <= 0:
                return False
