"""The tagged call path's view of a namespace: entries carry the versions of their tags
(:mod:`regions.tags`), and an entry whose versions are not the current ones is a miss."""

from __future__ import annotations

import asyncio
from collections.abc import Hashable
from typing import TYPE_CHECKING, Any

from ..signing import RejectedEntry

if TYPE_CHECKING:
    from ..backends.contract import Backend, Entry, Lease
    from ..locks import SharedLock


#: First item of a tagged entry's value slot: the format and its version. The slot holds plain
#: data, ``(STAMP, names, versions, value)``; no class of this package is ever part of what is stored.
STAMP = "regions.tagged/1"


def stamp(names: tuple[str, ...], versions: tuple[int, ...], value: Any) -> tuple[Any, ...]:
    """What a tagged entry stores in the value slot: its tags, their versions, the value."""
    return (STAMP, names, versions, value)


class TaggedView:
    """One call's view of a function's namespace manager, for the engine: entries go in and out
    :func:`stamp`-ed with the versions of ``names``, and a stamp that is not current is a miss.

    ``versions`` are those read by the last :meth:`get_entry` (before the computation):
    :meth:`set_entry` stores with them, so a bump made during the computation makes that entry
    stale at once. Without them (the read failed) nothing is stored.
    """

    __slots__ = ("ns", "names", "versions", "namespace", "store")

    def __init__(self, ns: Backend, names: tuple[str, ...]) -> None:
        self.ns, self.names = ns, names
        self.namespace, self.store = ns.namespace, ns.store
        self.versions: tuple[int, ...] | None = None

    def get_entry(self, key: Hashable) -> Entry | None:
        names = list(self.names)
        try:
            entry, versions = self.ns.get_entry_tagged(key, names)
        except RejectedEntry as exc:  # read as a miss, and rewritten with the versions read with it
            found = exc.tag_versions
            if found is not None and None not in found:
                self.versions = tuple(found)  # type: ignore[arg-type]  # no None: checked above
            raise
        if None in versions:  # a miss: create the missing versions before computing
            self.versions = tuple(self.ns.create_tags(key, names))
            return None
        current = self.versions = tuple(versions)  # type: ignore[arg-type]
        if entry is None:
            return None
        slot = entry[2]
        if (
            type(slot) is not tuple or len(slot) != 4 or slot[0] != STAMP
            or slot[2] != current or slot[1] != self.names
        ):
            return None
        return (entry[0], entry[1], slot[3])

    def prepare(self, key: Hashable) -> None:
        """Read (or create) the versions now, as a read would: before a refresh computes."""
        self.get_entry(key)

    def set_entry(self, key: Hashable, entry: Entry) -> None:
        if self.versions is not None:
            self.ns.set_entry(key, (entry[0], entry[1], stamp(self.names, self.versions, entry[2])))

    def lease(self, key: Hashable) -> Lease | None:
        """The namespace's lease: a tag bump already makes the entry stale, a delete of the key
        (``f.invalidate(x)`` in another process) voids the lease."""
        return self.ns.lease(key)

    def set_entry_leased(self, key: Hashable, entry: Entry, lease: Lease) -> bool:
        if self.versions is None:
            return True  # nothing is stored without versions (as set_entry): not a voided store
        return self.ns.set_entry_leased(
            key, (entry[0], entry[1], stamp(self.names, self.versions, entry[2])), lease
        )

    def delete_entry(self, key: Hashable) -> None:
        self.ns.delete_entry(key)

    def wire_key(self, key: Hashable) -> Hashable:
        return self.ns.wire_key(key)

    def storage_token(self) -> Hashable:
        return self.ns.storage_token()

    def down_since(self, key: Hashable) -> float | None:
        return self.ns.down_since(key)

    def shared_lock(self, key: Hashable) -> SharedLock | None:
        return self.ns.shared_lock(key)

    def do_remove(self) -> None:
        self.ns.do_remove()


class LoopTaggedView(TaggedView):
    """A :class:`TaggedView` over a namespace manager that reads on the event loop
    (``aget_entry_tagged``, :class:`~regions.backends.contract.AsyncEntries`): a coroutine's tagged
    hit needs no I/O thread. Creating missing versions (a miss) runs on the store's I/O threads.
    (:meth:`TaggedView.get_entry` is written out again here, awaited, rather than split: it is the
    sync tagged hit's path.)"""

    __slots__ = ()

    async def aget_entry(self, key: Hashable) -> Entry | None:
        names = list(self.names)
        try:
            entry, versions = await self.ns.aget_entry_tagged(key, names)
        except RejectedEntry as exc:
            found = exc.tag_versions
            if found is not None and None not in found:
                self.versions = tuple(found)  # type: ignore[arg-type]  # no None: checked above
            raise
        if None in versions:
            loop = asyncio.get_running_loop()
            created = await loop.run_in_executor(self.store.executor, self.ns.create_tags, key, names)
            self.versions = tuple(created)
            return None
        current = self.versions = tuple(versions)
        if entry is None:
            return None
        slot = entry[2]
        if (
            type(slot) is not tuple or len(slot) != 4 or slot[0] != STAMP
            or slot[2] != current or slot[1] != self.names
        ):
            return None
        return (entry[0], entry[1], slot[3])
