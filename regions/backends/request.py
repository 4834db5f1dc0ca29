"""``request``: entries live in the current :func:`regions.request_scope` and die with it."""

from __future__ import annotations

from collections.abc import Hashable
from typing import Any

from ..scope import CURRENT
from .contract import Backend, Entry, Store


class Slot:
    """Where one namespace of one store keeps its entries in a scope's data: hashed and compared by
    identity, which a hit's lookup does faster than for a ``(store id, namespace)`` tuple."""

    __slots__ = ("store", "namespace")

    def __init__(self, store: int, namespace: str) -> None:
        self.store, self.namespace = store, namespace

    def __repr__(self) -> str:
        return f"Slot({self.store}, {self.namespace!r})"


class RequestStore(Store):
    name = "request"
    native_keys = True
    timed = False
    io = False

    def __init__(self, region: str, location: Any, options: Any, **kwargs: Any) -> None:
        super().__init__(region, location, options, **kwargs)
        self._slots: dict[str, Slot] = {}

    def slot(self, namespace: str) -> Slot:
        """The one slot of ``namespace`` (the managers Beaker creates for it share their entries)."""
        found = self._slots.get(namespace)
        if found is None:
            found = self._slots.setdefault(namespace, Slot(id(self), namespace))
        return found

    def namespace(self, namespace: str) -> RequestNamespaceManager:
        return RequestNamespaceManager(namespace, self)

    def clear(self) -> None:
        data = CURRENT.get()
        if data is not None:
            for slot in [s for s in data if s.store == id(self)]:
                del data[slot]

    def count(self) -> int | None:
        data = CURRENT.get()
        if data is None:
            return None
        return sum(len(d) for s, d in data.items() if s.store == id(self))

    @property
    def active(self) -> bool:
        return CURRENT.get() is not None


class RequestNamespaceManager(Backend):
    """One function's entries in the current scope: ``scope.data[slot][key] = entry``, the slot
    being the store's for the namespace (:meth:`RequestStore.slot`).

    Keyed by store and namespace, not by manager: the managers Beaker creates for one namespace
    share their entries.
    """

    store_class = RequestStore
    store: RequestStore
    #: The decorator's inline hit may read ``CURRENT.get()[slot]`` itself
    inline = "scope"

    def __init__(self, namespace: str, store: Any = None, **beaker_options: Any) -> None:
        super().__init__(namespace, store, **beaker_options)
        self.slot = self._slot = self.store.slot(namespace)

    def get_entry(self, key: Hashable) -> Entry | None:
        data = CURRENT.get()
        if data is None:
            return None
        entries = data.get(self._slot)
        return None if entries is None else entries.get(key)

    def set_entry(self, key: Hashable, entry: Entry) -> None:
        data = CURRENT.get()
        if data is not None:
            entries = data.get(self._slot)
            if entries is None:
                entries = data.setdefault(self._slot, {})
            entries[key] = entry

    def delete_entry(self, key: Hashable) -> None:
        data = CURRENT.get()
        if data is not None:
            data.get(self._slot, {}).pop(key, None)

    def do_remove(self) -> None:
        data = CURRENT.get()
        if data is not None:
            data.pop(self._slot, None)

    def keys(self) -> list[Any]:
        data = CURRENT.get()
        return [] if data is None else list(data.get(self._slot, ()))

    def storage_token(self) -> Hashable:
        return id(CURRENT.get())  # each scope is its own storage
