"""Invalidation marks: a computation that an invalidation may have made obsolete does not store.

A computation takes a :meth:`~InvalidationMarks.mark` before it calls the function; after it,
:meth:`~InvalidationMarks.changed` says whether an invalidation that could touch its key was noted
since (in this process, or applied from another process's log). If so, its value may rest on the
data that the invalidation replaced, and it is returned to its callers but not stored.

Today any invalidation of the region counts for every key of it; the interface takes the namespace
and the key so that the check can be as narrow as the invalidation.
"""

from __future__ import annotations

from collections.abc import Hashable

Mark = int


class InvalidationMarks:
    """The invalidations of one region noted in this process (see the module docstring)."""

    __slots__ = ("noted",)

    def __init__(self) -> None:
        #: Invalidations noted so far (a plain integer: read on every miss).
        self.noted = 0

    def note(self, namespace: str | None = None, key: Hashable = None) -> None:
        """An invalidation of ``key`` in ``namespace`` (``key`` ``None``: all of the namespace;
        ``namespace`` ``None``: all of the region)."""
        self.noted += 1

    def mark(self, namespace: str, key: Hashable) -> Mark:
        """Taken before a computation of ``key`` in ``namespace`` starts."""
        return self.noted

    def changed(self, mark: Mark) -> bool:
        """Whether an invalidation that may touch the marked key was noted since ``mark``."""
        return self.noted != mark
