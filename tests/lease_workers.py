"""Spawned processes of ``tests/test_leases.py``: an async reader whose namespace is the same in
every process, and what the other processes do with it (invalidate once, read once)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import regions
from tests import sync_workers as w


def make_async_reader(
    manager: regions.CacheManager, region: str, data: str, hold: Callable[[], Awaitable[None]] | None = None
) -> Callable[[int], Awaitable[tuple[int, int]]]:
    """``await value(x) -> (x, version)`` cached in ``region``; ``await hold()`` runs in each
    computation after the version was read."""

    @manager.region(region)
    async def value(x: int) -> tuple[int, int]:
        version = w.read_version(data)
        if hold is not None:
            await hold()
        return (x, version)

    return value


def invalidate_async_once(settings: dict[str, Any], region: str, data: str, x: int) -> None:
    manager = w.build(settings)
    value = make_async_reader(manager, region, data)
    try:
        assert asyncio.run(value.invalidate(x)) is True  # type: ignore[attr-defined]
    finally:
        manager.close()


def read_async_once(settings: dict[str, Any], region: str, data: str, x: int, out: Any) -> None:
    manager = w.build(settings)
    value = make_async_reader(manager, region, data)
    try:
        out.put(asyncio.run(value(x)))
    finally:
        manager.close()
