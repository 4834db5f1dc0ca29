"""Workers for tests that run real processes (``multiprocessing.get_context("spawn")``).

Spawned children import this module by name, so everything they run is a top-level function here.
Each computation appends one line ``<pid> <key>`` to a shared log file (``O_APPEND``: lines from
several processes never interleave), so the parent counts computations across processes.
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
import traceback
from typing import Any

#: Set in each worker before the first call: the file the computations append to.
LOG_PATH = ""
#: Seconds one computation lasts: long enough for the two processes' computations to overlap.
WORK_SECONDS = 0.3


def log_computation(path: str, key: Any) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, f"{os.getpid()} {key}\n".encode())
    finally:
        os.close(fd)


def computed_keys(path: str) -> list[str]:
    """The key of every computation logged in ``path`` (one entry per computation)."""
    try:
        with open(path) as f:
            return [line.split()[1] for line in f if line.strip()]
    except FileNotFoundError:
        return []


async def compute_async(key: int) -> tuple[str, int]:
    log_computation(LOG_PATH, key)
    await asyncio.sleep(WORK_SECONDS)  # here a sleep is the point: computations must overlap
    return ("value", key)


def compute_sync(key: int) -> tuple[str, int]:
    log_computation(LOG_PATH, key)
    time.sleep(WORK_SECONDS)
    return ("value", key)


def run_worker(
    mode: str,
    config: dict,
    key_prefix: str,
    keys: list[int],
    log_path: str,
    ready: Any,
    go: Any,
    results: Any,
) -> None:
    """Build a manager, report ``("ready", pid)`` on ``ready``, wait for ``go``, then call the
    cached function on every key at once: one event loop gathering all keys (``mode="async"``)
    or one thread per key (``"sync"``).

    Puts ``("ok", pid, values)`` or ``("error", pid, traceback)`` on ``results``.
    """
    global LOG_PATH
    LOG_PATH = log_path
    manager = None
    announced = False
    try:
        import regions

        manager = regions.CacheManager(config, key_prefix=key_prefix)
        func = compute_async if mode == "async" else compute_sync
        cached = manager.region("r")(func)
        ready.put(("ready", os.getpid()))
        announced = True
        if not go.wait(60):
            results.put(("error", os.getpid(), "the parent never said go"))
            return
        if mode == "async":

            async def main() -> list[Any]:
                return await asyncio.wait_for(asyncio.gather(*(cached(k) for k in keys)), 60)

            values = asyncio.run(main())
        else:
            values = [None] * len(keys)
            failures: list[str] = []

            def call(i: int, k: int) -> None:
                try:
                    values[i] = cached(k)
                except BaseException:
                    failures.append(traceback.format_exc())

            threads = [threading.Thread(target=call, args=(i, k)) for i, k in enumerate(keys)]
            for t in threads:
                t.start()
            for t in threads:
                t.join(timeout=60)
            if failures or any(t.is_alive() for t in threads):
                results.put(("error", os.getpid(), failures[0] if failures else "a thread hung"))
                return
        results.put(("ok", os.getpid(), values))
    except BaseException:
        (results if announced else ready).put(("error", os.getpid(), traceback.format_exc()))
    finally:
        if manager is not None:
            manager.close()
