"""Workers of tests/test_tags_processes.py (spawned: everything they run is a top-level function).

A watcher caches ``read_truth(1)``, which reads a number from a file the test rewrites, under the
tag ``item:1``, and calls it every :data:`PAUSE` seconds. Each time the value it gets changes it
reports ``("seen", pid, value, time.time())``; a value lower than one it already got (an entry
older than an invalidation it saw) is reported as ``("stale", ...)``.
"""

from __future__ import annotations

import os
import time
import traceback
from typing import Any

PAUSE = 0.002


def watch(
    config: dict, key_prefix: str, secret: str, truth: str, ready: Any, reports: Any, stop: Any
) -> None:
    import regions

    manager = regions.CacheManager(config, key_prefix=key_prefix, secret=secret)
    pid = os.getpid()
    try:

        @manager.region("r", tags=lambda k: [f"item:{k}"])
        def read_truth(k: int) -> int:
            with open(truth) as f:
                return int(f.read())

        seen = read_truth(1)
        ready.put(pid)
        while not stop.is_set():
            value = read_truth(1)
            if value != seen:
                reports.put(("stale" if value < seen else "seen", pid, value, time.time()))
                seen = max(seen, value)
            time.sleep(PAUSE)
        reports.put(("stats", pid, manager["r"].stats(), 0.0))
    except BaseException:
        reports.put(("error", pid, traceback.format_exc(), 0.0))
    finally:
        manager.close()
