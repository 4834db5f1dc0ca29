"""``request``: entries live in the current :func:`regions.request_scope` and die with it."""

from __future__ import annotations

from collections.abc import Hashable
from typing import Any

from ..api import Backend, Entry, Store
from ..scope import CURRENT


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
            for slot in [s for s in data if getattr(s, "store", None) is self]:
                del data[slot]

    def count(self) -> int | None:
        data = CURRENT.get()
        if data is None:
            return None
        return sum(len(d) for s, d in data.items() if getattr(s, "store", None) is self)

    @property
    def active(self) -> bool:
        return CURRENT.get() is not None


class RequestNamespaceManager(Backend):
    """One function's entries in the current scope: ``scope.data[self][key] = entry``."""

    store_class = RequestStore

    def wire_key(self, key: Hashable) -> tuple[str, Hashable]:
        return (self.namespace, key)

    def get_entry(self, key: Hashable) -> Entry | None:
        data = CURRENT.get()
        if data is None:
            return None
        entries = data.get(self)
        return None if entries is None else entries.get(key)

    def set_entry(self, key: Hashable, entry: Entry) -> None:
        data = CURRENT.get()
        if data is not None:
            entries = data.get(self)
            if entries is None:
                entries = data.setdefault(self, {})
            entries[key] = entry

    def delete_entry(self, key: Hashable) -> None:
        data = CURRENT.get()
        if data is not None:
            data.get(self, {}).pop(key, None)

    def do_remove(self) -> None:
        data = CURRENT.get()
        if data is not None:
            data.pop(self, None)

    def keys(self) -> list[Any]:
        data = CURRENT.get()
        return [] if data is None else list(data.get(self, ()))

    def storage_token(self) -> Hashable:
        return id(CURRENT.get())  # each scope is its own storage
