"""Workers for the deployment-stats tests (tests/test_fleet.py): real processes, spawned or forked.

Spawned children import this module by name, so everything they run is a top-level function here.
Each worker builds its own manager on the same settings, makes a known number of hits and misses,
says so on a queue, and stays alive (publishing) until told to stop.
"""

from __future__ import annotations

import os
import traceback
from typing import Any

import regions


def make_calls(manager: regions.CacheManager, plan: dict[str, tuple[int, int]]) -> None:
    """For each region name: ``hits`` hits and ``misses`` misses (and one set, which the hits read)."""
    for name, (hits, misses) in plan.items():
        region = manager[name]
        for i in range(misses):
            assert region.get(("absent", os.getpid(), i)) is None
        region.set("present", name)
        for _ in range(hits):
            assert region.get("present") == name


def counting_process(
    config: dict[str, Any], options: dict[str, Any], plan: dict[str, tuple[int, int]],
    done: Any, stop: Any,
) -> None:
    """Make the calls of ``plan``, put ``(pid, None)`` on ``done`` (or the traceback), live until
    ``stop`` is set, then end without closing the manager (as a killed worker would)."""
    try:
        manager = regions.CacheManager(config, **options)
        make_calls(manager, plan)
    except BaseException:
        done.put((os.getpid(), traceback.format_exc()))
        raise
    done.put((os.getpid(), None))
    stop.wait(120)


def forked_child(
    manager: regions.CacheManager, plan: dict[str, tuple[int, int]], done: Any, stop: Any
) -> None:
    """In a forked child of a process that already used ``manager``: more calls, then live until
    ``stop``. Its figures must be these calls only, not its parent's too."""
    try:
        make_calls(manager, plan)
    except BaseException:
        done.put((os.getpid(), traceback.format_exc()))
        raise
    done.put((os.getpid(), None))
    stop.wait(120)
