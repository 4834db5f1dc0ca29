"""Invalidation marks: a computation that an invalidation may have made obsolete does not store.

A computation takes a :meth:`~InvalidationMarks.mark` before it calls the function; after it,
:meth:`~InvalidationMarks.changed` says whether an invalidation that could touch its key was noted
since (in this process, or applied from another process's log). If so, its value may rest on the
data that the invalidation replaced, and it is returned to its callers but not stored.

The check is as narrow as the invalidation: one of the key (:meth:`~Region.remove`, a refresh, a
``key`` record of the log), of its namespace (``invalidate_all``, Django's ``clear()``, a
``namespace`` record) or of the region (``clear()``, a ``clear`` record, a reset of the log). An
invalidation of another key or namespace leaves the computation to store: in a region where
something is invalidated every few milliseconds, a function still gets cached. Tag invalidations
are not noted: a tagged entry is stored with the tag versions read before its computation
(:class:`~regions.tags.view.TaggedView`), so a bump made meanwhile makes it a miss anyway.

The notes are kept in a bounded ring (:data:`RING` of them): a computation during which more
invalidations were noted than the ring holds counts as changed (it cannot tell what they covered).
A note takes a lock (writers only); :meth:`~InvalidationMarks.mark`, on every miss, reads one
integer; :meth:`~InvalidationMarks.changed` scans only the notes made since its mark. A hit does
neither.
"""

from __future__ import annotations

import threading
from collections.abc import Hashable

#: ``(notes so far, namespace, key)`` when a computation started.
Mark = tuple[int, str, Hashable]

#: Notes kept per region: more during one computation and it does not store (conservatively).
RING = 1024


class InvalidationMarks:
    """The invalidations of one region noted in this process (see the module docstring)."""

    __slots__ = ("noted", "notes", "size", "lock")

    def __init__(self, size: int = RING) -> None:
        #: Invalidations noted so far (a plain integer: read on every miss). Note number ``n`` is
        #: ``notes[n % size]`` until note ``n + size`` replaces it.
        self.noted = 0
        self.size = size
        #: ``(namespace, key)`` of each recent note: ``(None, None)`` the region, ``(ns, None)`` a namespace.
        self.notes: list[tuple[str | None, Hashable]] = [(None, None)] * size
        self.lock = threading.Lock()

    def note(self, namespace: str | None = None, key: Hashable = None) -> None:
        """An invalidation of ``key`` in ``namespace`` (``key`` ``None``: all of the namespace;
        ``namespace`` ``None``: all of the region)."""
        with self.lock:
            n = self.noted + 1
            self.notes[n % self.size] = (namespace, None if namespace is None else key)
            self.noted = n  # published after its slot is written: a reader never sees it unwritten

    def mark(self, namespace: str, key: Hashable) -> Mark:
        """Taken before a computation of ``key`` in ``namespace`` starts."""
        return (self.noted, namespace, key)

    def changed(self, mark: Mark) -> bool:
        """Whether an invalidation that may touch the marked key was noted since ``mark``."""
        since, namespace, key = mark
        upto = self.noted
        if upto == since:
            return False
        size = self.size
        if upto - since >= size:
            return True  # some of them are no longer in the ring
        notes = self.notes
        for n in range(since + 1, upto + 1):
            ns, k = notes[n % size]
            if ns is None or (ns == namespace and (k is None or k == key)):
                return True
        # A note written while this scanned may have replaced a slot it read: then it cannot tell.
        return self.noted - since >= size
