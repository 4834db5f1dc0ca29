"""The invalidation log: how process-local entries (synced ``memory`` regions, ``tiered`` regions'
local tiers) learn of invalidations made in other processes.

* :mod:`~regions.sync.records`: the record format (versioned JSON);
* :mod:`~regions.sync.log`: :class:`SyncLog`, the reader with its gap and reset rules;
* :mod:`~regions.sync.local`: :class:`LocalSync`, a store's side (when to look, degraded mode,
  counters), :func:`note_changes` and :func:`apply_changes`;
* :mod:`~regions.sync.push`: :class:`Waker`, a thread that waits on a log whose storage can wait
  (Redis) and makes the store look the moment a record arrives.

A backend supplies only where the records are kept (:class:`~regions.backends.contract.LogStorage`).
"""

from .local import LocalSync, Note, apply_changes, note_changes
from .log import CHUNK, MAX_GAP, RECORD_TTL, SyncLog
from .push import Waker
from .records import Record, record

__all__ = [
    "CHUNK", "MAX_GAP", "RECORD_TTL", "LocalSync", "Note", "Record", "SyncLog", "apply_changes",
    "Waker", "note_changes", "record",
]
