"""``request``: entries live in the current :func:`regions.request_scope` and die with it."""

from __future__ import annotations

from collections.abc import Hashable
from typing import Any

from ..scope import CURRENT
from .contract import Backend, Entry, Store


class RequestStore(Store):
    name = "request"
    native_keys = True
    timed = False
    io = False

    def namespace(self, namespace: str) -> RequestNamespaceManager:
        return RequestNamespaceManager(namespace, self)

    def clear(self) -> None:
        data = CURRENT.get()
        if data is not None:
            for slot in [s for s in data if s[0] == id(self)]:
                del data[slot]

    def count(self) -> int | None:
        data = CURRENT.get()
        if data is None:
            return None
        return sum(len(d) for s, d in data.items() if s[0] == id(self))

    @property
    def active(self) -> bool:
        return CURRENT.get() is not None


class RequestNamespaceManager(Backend):
    """One function's entries in the current scope: ``scope.data[(id(store), namespace)][key] = entry``.

    Keyed by store and namespace, not by manager: the managers Beaker creates for one namespace
    share their entries.
    """

    store_class = RequestStore
    #: The decorator's inline hit may read ``CURRENT.get()[slot]`` itself
    inline = "scope"

    def __init__(self, namespace: str, store: Any = None, **beaker_options: Any) -> None:
        super().__init__(namespace, store, **beaker_options)
        self.slot = self._slot = (id(self.store), namespace)

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
