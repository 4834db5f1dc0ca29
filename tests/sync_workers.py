"""Spawned processes sharing synced and tiered regions (``tests/test_synced_regions.py``).

Every process builds a manager from the same settings and decorates :func:`make_reader`'s function,
whose qualified name (so its cache namespace) is the same in every process. The function reads the
"database" (a small file holding a version number) and counts its computations in a file per
process, so the test sees which process computed what.
"""

from __future__ import annotations

import os
import queue
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import regions

#: Pause between two reads of a watching process.
PAUSE = 0.003


def config(memcached: str, folder: str, interval: float) -> dict[str, Any]:
    """Two shared regions and the four process-local ones that work through them."""
    return {
        "functions": {"BACKEND": "memcached", "LOCATION": memcached, "TIMEOUT": 300},
        "files": {"BACKEND": "file", "LOCATION": folder, "TIMEOUT": 300},
        "local": {"BACKEND": "memory", "OPTIONS": {"sync_with": "functions", "sync_interval": interval}},
        "flocal": {"BACKEND": "memory", "OPTIONS": {"sync_with": "files", "sync_interval": interval}},
        "hot": {"BACKEND": "tiered", "OPTIONS": {"over": "functions", "sync_interval": interval}},
        "fhot": {"BACKEND": "tiered", "OPTIONS": {"over": "files", "sync_interval": interval}},
    }


def build(settings: dict[str, Any]) -> regions.CacheManager:
    """The manager every process builds from the shared settings."""
    return regions.CacheManager(settings["config"], key_prefix=settings["prefix"], secret=settings["secret"])


def read_version(data: str) -> int:
    try:
        return int(Path(data).read_text() or 0)
    except (OSError, ValueError):
        return -1  # being rewritten: read again


def write_version(data: str, version: int) -> None:
    tmp = f"{data}.{os.getpid()}"
    Path(tmp).write_text(str(version))
    os.replace(tmp, data)


def make_reader(
    manager: regions.CacheManager, region: str, data: str, log: str, tagged: bool = False,
    hold: Callable[[], None] | None = None,
) -> Callable[[int], Any]:
    """``value(x) -> (x, version)``, cached in ``region`` (``tagged``: with tag ``item:<x>``); each
    computation appends ``x`` to ``log``. ``hold()``, if given, runs in each computation after the
    version was read (a test keeps a computation under way with it)."""

    @manager.region(region, tags=(lambda x: [f"item:{x}"]) if tagged else None)
    def value(x: int) -> tuple[int, int]:
        with open(log, "a") as f:
            f.write(f"{x}\n")
        version = read_version(data)
        if hold is not None:
            hold()
        return (x, version)

    return value


def computed(log: str) -> list[int]:
    try:
        return [int(line) for line in Path(log).read_text().split()]
    except FileNotFoundError:
        return []


def watch(
    settings: dict[str, Any], region: str, data: str, log: str, keys: list[int], ready: Any, go: Any,
    out: Any, deadline: float,
) -> None:
    """Warm ``keys``, say so, then read them until each of ``settings["changed"]`` shows the
    version the test sets after ``go``, then once more; report ``{key: monotonic time the new
    version was first seen}`` (absent: never seen)."""
    manager = build(settings)
    value = make_reader(manager, region, data, log, settings.get("tagged", False))
    for x in keys:
        value(x)
    ready.put(os.getpid())
    go.wait(30)
    target = settings["target"]
    seen: dict[int, float] = {}
    changed = set(settings["changed"])
    last_pass = False
    while time.monotonic() < deadline:
        for x in keys:
            if x not in seen and value(x)[1] == target:
                seen[x] = time.monotonic()
        if last_pass:
            break
        last_pass = changed <= set(seen)  # one more pass: did anything else change with them?
        time.sleep(PAUSE)
    out.put((os.getpid(), seen, manager[region].stats()))
    manager.close()


def read_once(settings: dict[str, Any], region: str, data: str, log: str, keys: list[int], out: Any) -> None:
    """Read ``keys`` once and report what was read."""
    manager = build(settings)
    value = make_reader(manager, region, data, log, settings.get("tagged", False))
    out.put((os.getpid(), [value(x) for x in keys]))
    manager.close()


def invalidate_once(settings: dict[str, Any], region: str, data: str, log: str, op: str, x: int) -> None:
    """Invalidate once, as the test says (``op``: ``key`` / ``namespace`` / ``clear`` / ``tags`` of
    key ``x``), and exit: the record goes to the invalidation log for every other process."""
    manager = build(settings)
    value = make_reader(manager, region, data, log, settings.get("tagged", False))
    if op == "key":
        done = value.invalidate(x)
    elif op == "namespace":
        done = value.invalidate_all()
    elif op == "clear":
        done = manager[region].clear()
    else:
        done = manager.invalidate_tags(f"item:{x}")
    manager.close()
    assert done is True, f"{op} of {x} did not reach the shared storage"


def wait_ready(ready: Any, procs: list[Any], timeout: float = 120) -> None:
    """Wait for each process to say it is ready; fail at once, saying so, if one died first."""
    deadline, count = time.monotonic() + timeout, 0
    while count < len(procs):
        try:
            ready.get(timeout=0.5)
            count += 1
        except queue.Empty:
            dead = [p.exitcode for p in procs if p.exitcode is not None]
            assert not dead, f"a process exited with {dead} before it was ready (its error is above)"
            left = len(procs) - count
            assert time.monotonic() < deadline, f"{left} process(es) not ready after {timeout} s"
