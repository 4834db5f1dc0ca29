"""Spawned writers of ``tests/test_clock_skew.py``: a process whose wall clock is off by ``skew``
seconds (``time.time`` patched before anything is built) writes one entry, then says when, on the
true clock."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import regions
from tests import sync_workers as w

#: The value every writer stores; a reader that computes stores something else.
WRITTEN = "written by the skewed writer"
#: Stored in parts (region ``big``: items of 1,024 bytes): the head item's seconds left count.
LARGE = WRITTEN * 200


def tagged_function(manager: regions.CacheManager, value: str) -> Callable[[int], str]:
    """The same tagged function (same cache key) in every process, computing ``value``."""

    @manager.region("mc", tags=lambda x: [f"item:{x}", "items"])
    def item(x: int) -> str:
        return value

    return item


def write(settings: dict[str, Any], kind: str, skew: float, out: Any) -> None:
    true_time = time.time
    time.time = lambda: true_time() + skew  # this process's clock only (spawned: nothing shared)
    manager = w.build(settings)
    try:
        item = tagged_function(manager, WRITTEN)
        manager["mc"].get("warm-up")  # connected and generations read: the write is quick
        at = true_time()
        if kind == "plain":
            manager["mc"].set("k", WRITTEN)
        elif kind == "split":
            manager["big"].set("k", LARGE)
        elif kind == "tagged":
            assert item(1) == WRITTEN
        else:
            manager["hot"].set("k", WRITTEN)
        out.put(at)
    finally:
        manager.close()
