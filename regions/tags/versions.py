"""In-process tag versions: the default :class:`~regions.backends.contract.TagVersions` of a store.

A tag's version is an integer that changes on every bump. Entries of tagged functions carry the
versions read before they were computed and are served only while those are still current
(:mod:`regions.tags`). Versions are compared for equality only; a bump of a tag that has no
version does nothing (no entry can carry it).
"""

from __future__ import annotations

import itertools
import threading
import time

#: Every version handed out by this process is new (starting from the time in µs: a store rebuilt
#: in the same process never gives an old value back).
_NEXT = itertools.count(time.time_ns() // 1000)
#: Versions kept at most; past that they are all dropped (entries carrying them then miss, once).
MAX_TAGS = 100_000


class LocalVersions:
    """Tag name -> version, in this process (memory and request regions)."""

    __slots__ = ("versions", "lock", "serial")

    def __init__(self) -> None:
        #: name -> current version; emptied in place, never replaced (the decorator's inline tagged
        #: hit reads it as :attr:`table`)
        self.versions: dict[str, int] = {}
        self.lock = threading.Lock()
        #: A new object after every change of :attr:`versions` (made after the change): an entry
        #: checked against the versions while ``serial`` was one object is still current while it
        #: is the same (the decorator's inline tagged hit checks each entry once per change).
        self.serial = object()

    @property
    def local_versions(self) -> LocalVersions:
        return self

    def read(self, names: list[str]) -> list[int | None]:
        get = self.versions.get
        return [get(name) for name in names]

    def create(self, names: list[str]) -> list[int]:
        with self.lock:
            if len(self.versions) >= MAX_TAGS:
                self.versions.clear()
            setdefault = self.versions.setdefault
            created = [setdefault(name, next(_NEXT)) for name in names]
            self.serial = object()
            return created

    def bump(self, names: list[str]) -> None:
        with self.lock:
            versions = self.versions
            for name in names:
                if name in versions:
                    versions[name] = next(_NEXT)
            self.serial = object()
