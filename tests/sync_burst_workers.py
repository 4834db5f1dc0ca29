"""Spawned processes for ``tests/test_sync_burst.py``: the functions every process decorates (same
qualified names, so the same cache namespaces) and the burst of invalidations one of them makes."""

from __future__ import annotations

import collections
from collections.abc import Callable
from typing import Any

from tests import sync_workers as w

Counts = collections.Counter[str]


def functions(manager: Any, region: str) -> tuple[Callable[[int], int], Callable[[int], int], Counts]:
    """``g`` and ``h`` cached in ``region``, and how often this process computed each."""
    computed: collections.Counter[str] = collections.Counter()

    @manager.region(region)
    def g(x: int) -> int:
        computed["g"] += 1
        return x

    @manager.region(region)
    def h(x: int) -> int:
        computed["h"] += 1
        return x

    return g, h, computed


def burst(settings: dict[str, Any], region: str, n: int) -> None:
    """Invalidate ``h(0)`` .. ``h(n - 1)``, one record each, as fast as this process can."""
    manager = w.build(settings)
    _g, h, _computed = functions(manager, region)
    for x in range(n):
        assert h.invalidate(x) is True
    manager.close()
