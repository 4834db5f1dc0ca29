"""Backends by name. Each module holds one store and its Beaker namespace manager.

Beaker finds them through the ``beaker.backends`` entry points as ``regions.<name>``;
:func:`store_class` resolves a ``BACKEND`` setting through Beaker's registry and falls back to a
direct import, so a source checkout without installed metadata works too.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from typing import Any

from .contract import Store

BUILTIN = {
    "memcached": "regions.backends.memcached:MemcachedNamespaceManager",
    "redis": "regions.backends.redis:RedisNamespaceManager",
    "file": "regions.backends.file:FileNamespaceManager",
    "request": "regions.backends.request:RequestNamespaceManager",
    "memory": "regions.backends.memory:MemoryNamespaceManager",
    "tiered": "regions.backends.tiered:TieredNamespaceManager",
}

#: Backends that an option turns into another: ``memory`` with ``sync_with`` is a synced memory
#: region. The registry, not the plain backend, knows its variants (no import cycle between them).
VARIANTS = {("memory", "sync_with"): "regions.backends.synced:SyncedMemoryStore"}

#: Beaker's own type names as written in a Beaker ``cache_opts`` dict.
BEAKER_ALIASES = {
    "ext:memcached": "memcached",
    "ext:pylibmc": "memcached",
    "ext:redis": "redis",
    "file": "file",
    "memory": "memory",
}


def _load(path: str) -> type:
    module, _, attr = path.partition(":")
    return getattr(importlib.import_module(module), attr)


def for_options(cls: type[Store], options: Mapping[str, Any]) -> type[Store]:
    """The class that builds a region of ``cls`` with these (valid) options: a variant of
    :data:`VARIANTS`, else what :meth:`Store.for_options` says (a third-party backend's variants)."""
    for (name, option), path in VARIANTS.items():
        if cls.name == name and options.get(option) is not None:
            store: type[Store] = _load(path)
            return store
    return cls.for_options(options)


def store_class(backend: str) -> type[Store] | None:
    """The :class:`Store` class for a ``BACKEND`` name, or ``None`` when unknown."""
    name = backend.removeprefix("regions.")
    manager_cls = None
    try:
        from beaker.cache import clsmap

        manager_cls = clsmap[f"regions.{name}"]
    except Exception:  # not installed as a distribution, or Beaker's registry failed to load
        if name in BUILTIN:
            manager_cls = _load(BUILTIN[name])
    if manager_cls is None and _is_path(backend):
        try:
            manager_cls = _load(backend)  # "package.module:ManagerClass"
        except Exception:  # any failure of the module's import: why_unknown() names it
            return None
    store = getattr(manager_cls, "store_class", None)
    return store if isinstance(store, type) and issubclass(store, Store) else None


def _is_path(backend: str) -> bool:
    return ":" in backend and "." in backend.partition(":")[0]


def why_unknown(backend: str) -> tuple[str, str]:
    """Why :func:`store_class` found no store for ``backend``: ``(what failed, remedy)``; for a
    ``package.module:Class`` path, the import's own error (a missing package, a missing dependency
    of the module, an error in it)."""
    builtin = f"use one of {', '.join(map(repr, BUILTIN))}, or 'package.module:NamespaceManagerClass'"
    if not _is_path(backend):
        return f"unknown BACKEND {backend!r}", builtin
    module, _, attr = backend.partition(":")
    try:
        found = importlib.import_module(module)
    except Exception as exc:
        return (
            f"BACKEND {backend!r} cannot be loaded: importing {module!r} raised "
            f"{type(exc).__name__}: {exc}",
            f"make {module!r} importable here: install its package and what it imports (the error "
            "names what is missing), or correct the module path",
        )
    if not hasattr(found, attr):
        return (
            f"BACKEND {backend!r} cannot be loaded: module {module!r} has no attribute {attr!r}",
            f"name the namespace manager class that {module!r} defines, as 'package.module:Class'",
        )
    return (
        f"BACKEND {backend!r} is not a regions backend: {attr!r} has no store_class that is a "
        "regions.backends.contract.Store",
        "name a Beaker namespace manager class whose store_class is your Store subclass "
        "(see regions.backends.contract)",
    )
