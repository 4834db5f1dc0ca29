"""Spawned processes of ``tests/test_redis.py``: each builds the manager from the same settings
and decorates :func:`make_reader`'s function (same namespace in every process)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import regions
from tests import sync_workers as w


def build(settings: dict[str, Any]) -> regions.CacheManager:
    return regions.CacheManager(settings["config"], key_prefix=settings["prefix"], secret=settings["secret"])


def make_reader(manager: regions.CacheManager, data: str, hold: Callable[[], None] | None = None,
                region: str = "r") -> Any:
    """``value(x) -> (x, version)`` cached in ``region`` (``r``: the Redis region)."""

    @manager.region(region)
    def value(x: int) -> tuple[int, int]:
        version = w.read_version(data)
        if hold is not None:
            hold()
        return (x, version)

    return value


def invalidate_once(settings: dict[str, Any], data: str, x: int, region: str = "r") -> None:
    manager = build(settings)
    try:
        assert make_reader(manager, data, region=region).invalidate(x) is True
    finally:
        manager.close()


def read_once(settings: dict[str, Any], data: str, x: int, out: Any) -> None:
    manager = build(settings)
    try:
        out.put(make_reader(manager, data)(x))
    finally:
        manager.close()


def take_lock(url: str, name: str, out: Any) -> None:
    """Take the lock ``name`` (as another process's region would) and report whether it got it."""
    manager = regions.CacheManager({"r": {"BACKEND": "redis", "LOCATION": url}}, key_prefix="lock")
    try:
        from regions.backends.redis.lock import TokenLock

        lock = TokenLock(manager["r"].store, name)  # type: ignore[arg-type]
        out.put(lock.acquire(0))
    finally:
        manager.close()
