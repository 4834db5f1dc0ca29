"""The reader of an invalidation log: one store's position in it and the gap and reset rules.

A log on shared storage (:class:`~regions.backends.contract.LogStorage`) is a counter ``seq`` and
one record (:mod:`regions.sync.records`) per invalidation, record ``n`` under the value ``seq``
took when it was appended. A look reads ``seq`` (one round trip when nothing changed) and fetches
the records not seen yet, :data:`CHUNK` per round trip: a burst of invalidations costs a look in
proportion to its size, and drops only what its records name.

Whenever continuity cannot be shown (the first read, a counter that went back or jumped by more
than :data:`MAX_GAP`, a record missing because it was evicted or lost in a restart, a record that
does not parse), the reader answers "reset": the process drops all its local entries, which
over-invalidates but never serves a value an invalidation replaced. A store skips the records it
wrote itself (it applied them when it made them).
"""

from __future__ import annotations

import os
import secrets
import time
from collections.abc import Hashable
from typing import TYPE_CHECKING

from .records import Record, record

if TYPE_CHECKING:
    from ..backends.contract import LogStorage

#: Unseen records fetched in one round trip.
CHUNK = 500
#: More unseen records than this: reset instead of fetching them (a look then costs at most
#: ``MAX_GAP / CHUNK`` round trips). Storage keeps at least this many records (memcached: for
#: :data:`RECORD_TTL` seconds).
MAX_GAP = 20_000
#: Seconds a record is kept on memcached: a process that did not look for longer (no reads for
#: 5 minutes) resets at its next look, and a busy log holds at most this many seconds of records.
RECORD_TTL = 300


def new_origin() -> str:
    """An id for the records of one store in one process (a forked child takes a new one)."""
    return f"{os.getpid()}-{secrets.token_hex(6)}"


class SyncLog:
    """One process's position in a log, and what it found there since its last look."""

    def __init__(self, storage: LogStorage) -> None:
        self.storage = storage
        self.seen: int | None = None
        #: Written into this store's records, which it skips when it reads them back.
        self.origin = new_origin()

    def publish(
        self, op: str, namespace: str | None = None, key: Hashable = None, tags: list[str] | None = None
    ) -> None:
        """Append one record (raises when the storage cannot be reached)."""
        self.storage.append(record(self.origin, op, namespace, key, tags))

    def changes(self) -> list[Record] | None:
        """The records of other processes appended since the last call, or ``None``: reset (drop
        every local entry). Raises when the storage cannot be reached (``seen`` is kept)."""
        head = self.storage.head()
        found = self._since(self.seen, head)  # raises before ``seen`` moves: read again next time
        self.seen = head
        return found

    def after_fork(self) -> None:
        """A forked child writes under an origin of its own (its parent's records are not its own)."""
        self.origin = new_origin()

    def _since(self, seen: int | None, head: int) -> list[Record] | None:
        if seen is None or head < seen or head - seen > MAX_GAP:
            return None
        if head == seen:
            return []
        found = self._fetch(seen + 1, head)
        if len(found) < head - seen:  # appended a moment ago: its counter before its record?
            time.sleep(0.002)
            first_missing = next(n for n in range(seen + 1, head + 1) if n not in found)
            found.update(self._fetch(first_missing, head))
            if len(found) < head - seen:
                return None
        mine = self.origin
        out = []
        try:
            for n in range(seen + 1, head + 1):
                rec = Record(found[n])
                if rec.origin != mine:
                    out.append(rec)
        except (ValueError, KeyError, TypeError, UnicodeDecodeError):
            return None
        return out

    def _fetch(self, first: int, last: int) -> dict[int, bytes]:
        """The records ``first`` .. ``last`` that are present, :data:`CHUNK` per round trip."""
        found: dict[int, bytes] = {}
        for start in range(first, last + 1, CHUNK):
            found.update(self.storage.records(start, min(start + CHUNK - 1, last)))
        return found
