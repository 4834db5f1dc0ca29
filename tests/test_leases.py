"""An invalidation made in ANOTHER process while this process computes the value wins over that
computation (memcached leases, "Scaling Memcache at Facebook", NSDI 2013).

Process A starts computing ``value(1)`` (the computation reads the "database", version 1, then is
held by an event); a spawned process B writes version 2 and calls ``value.invalidate(1)``; then A
finishes. A's result rests on version 1: stored after B's delete, it would be served to every
process until it expires (TIMEOUT 300 here). The computation took a lease before it started, B's
delete voided it, so A's store is refused: every process then reads version 2.

Nothing here lets A see B's invalidation otherwise: plain memcached and file regions keep no log,
and the tiered regions' log is read every 30 s only (``sync_interval``).
"""

from __future__ import annotations

import asyncio
import multiprocessing
import threading
import uuid
from pathlib import Path
from typing import Any

import pytest

from tests import lease_workers as lw
from tests import sync_workers as w

#: Seconds between two looks at the invalidation log (tiered): longer than the test.
INTERVAL = 30.0
REGIONS = ["functions", "files", "hot", "fhot"]  # memcached, file, tiered over each


def _settings(memcached: str, tmp_path: Path) -> dict[str, Any]:
    return {
        "config": w.config(memcached, str(tmp_path / "files"), INTERVAL),
        "prefix": "l" + uuid.uuid4().hex[:10],
        "secret": "lease-secret-" + uuid.uuid4().hex,
    }


def _run(target: Any, *args: Any) -> None:
    proc = multiprocessing.get_context("spawn").Process(target=target, args=args)
    proc.start()
    proc.join(60)
    assert proc.exitcode == 0, f"the spawned process exited with {proc.exitcode}"


def _read_elsewhere(target: Any, *args: Any) -> Any:
    ctx = multiprocessing.get_context("spawn")
    out = ctx.Queue()
    proc = ctx.Process(target=target, args=(*args, out))
    proc.start()
    try:
        return out.get(timeout=60)
    finally:
        proc.join(60)


@pytest.mark.parametrize("region", REGIONS)
def test_an_invalidation_from_another_process_voids_a_computation_under_way(
    memcached_server: str, tmp_path: Path, region: str
) -> None:
    data = str(tmp_path / "data.txt")
    w.write_version(data, 1)
    settings = _settings(memcached_server, tmp_path)
    inside, release = threading.Event(), threading.Event()

    def hold() -> None:
        if threading.current_thread().name == "slow":
            inside.set()
            assert release.wait(30)

    manager = w.build(settings)
    try:
        log = str(tmp_path / "computed-a.log")
        value = w.make_reader(manager, region, data, log, False, hold)
        results: list[Any] = []
        slow = threading.Thread(target=lambda: results.append(value(1)), name="slow")
        slow.start()
        assert inside.wait(10)
        w.write_version(data, 2)  # the database changes, then B invalidates
        _run(w.invalidate_once, settings, region, data, str(tmp_path / "computed-b.log"), "key", 1)
        release.set()
        slow.join(10)
        assert results == [(1, 1)]  # that caller gets what it computed
        seen_here = value(1)
        seen_elsewhere = _read_elsewhere(w.read_once, settings, region, data, str(tmp_path / "c.log"), [1])
        assert (seen_here, seen_elsewhere[1]) == ((1, 2), [(1, 2)]), (
            f"{region}: after another process's invalidate, this process read {seen_here} and another "
            f"read {seen_elsewhere[1]}: the computation under way stored the old value over the delete"
        )
        assert manager[region].stats()["voided"] == 1
    finally:
        release.set()
        manager.close()


def test_an_async_computation_is_voided_too(memcached_server: str, tmp_path: Path) -> None:
    data = str(tmp_path / "data.txt")
    w.write_version(data, 1)
    settings = _settings(memcached_server, tmp_path)
    manager = w.build(settings)

    async def scenario() -> tuple[Any, Any]:
        inside, release = asyncio.Event(), asyncio.Event()
        first = [True]

        async def hold() -> None:
            if first[0]:
                first[0] = False
                inside.set()
                await release.wait()

        value = lw.make_async_reader(manager, "functions", data, hold)
        task = asyncio.create_task(value(1))
        await asyncio.wait_for(inside.wait(), 10)
        w.write_version(data, 2)
        await asyncio.to_thread(_run, lw.invalidate_async_once, settings, "functions", data, 1)
        release.set()
        return await task, await value(1)

    try:
        computed, seen_here = asyncio.run(scenario())
        assert computed == (1, 1)
        seen_elsewhere = _read_elsewhere(lw.read_async_once, settings, "functions", data, 1)
        assert (seen_here, seen_elsewhere) == ((1, 2), (1, 2)), "the old value was stored over the delete"
        assert manager["functions"].stats()["voided"] == 1
    finally:
        manager.close()


# --- the lease itself, on each shared store ---------------------------------------------------


@pytest.mark.parametrize("backend", ["memcached", "file"])
@pytest.mark.parametrize("size", ["small", "split"])
def test_a_placeholder_is_a_miss_and_a_delete_voids_the_lease(backend, size, region_config, make_manager):
    """A lease's placeholder is read as a miss by every reader (not as a planted entry: nothing is
    rejected), a leased store takes, and a delete between lease and store refuses it."""
    options = {"item_size": 1024} if backend == "memcached" else {}
    manager = make_manager({"r": region_config(backend, TIMEOUT=300, OPTIONS=options)})
    region = manager["r"]
    ns = region.namespace("leases")
    value = "v" * (5000 if size == "split" else 10)  # split: stored in parts, the head cas'ed

    lease = ns.lease("k")
    assert region.read(ns, "k") == (None, False)
    assert ns.get_entry_tagged("k", ["t"])[0] is None
    assert "k" not in ns  # Beaker's interface
    assert region.store_entry(ns, "k", value, 300, lease=lease) is True
    assert region.get_or_create_in(ns, "k", lambda: "computed", 300) == value

    lease = ns.lease("k")  # on the entry there now
    assert region.store_entry(ns, "k", value + "2", 300, lease=lease) is True
    assert region.lookup(ns, "k") == value + "2"

    for before_store in ("delete", "rewritten"):
        lease = ns.lease("k")
        if before_store == "delete":
            region.remove(ns, "k")
        else:
            region.store_entry(ns, "k", "newer", 300)
        assert region.store_entry(ns, "k", "obsolete", 300, lease=lease) is False
        assert region.lookup(ns, "k") == (None if before_store == "delete" else "newer")
    stats = region.stats()
    assert (stats["voided"], stats["rejected"], stats["errors"]) == (2, 0, 0), stats


@pytest.mark.parametrize("region", ["functions", "files"])
def test_a_tagged_function_invalidated_by_key_in_another_process(
    memcached_server: str, tmp_path: Path, region: str
) -> None:
    """Tag versions do not change on ``f.invalidate(x)``: the lease covers tagged functions too."""
    data = str(tmp_path / "data.txt")
    w.write_version(data, 1)
    settings = {**_settings(memcached_server, tmp_path), "tagged": True}
    inside, release = threading.Event(), threading.Event()

    def hold() -> None:
        if threading.current_thread().name == "slow":
            inside.set()
            assert release.wait(30)

    manager = w.build(settings)
    try:
        value = w.make_reader(manager, region, data, str(tmp_path / "a.log"), True, hold)
        slow = threading.Thread(target=value, args=(1,), name="slow")
        slow.start()
        assert inside.wait(10)
        w.write_version(data, 2)
        _run(w.invalidate_once, settings, region, data, str(tmp_path / "b.log"), "key", 1)
        release.set()
        slow.join(10)
        assert value(1) == (1, 2), "the old value was stored over another process's invalidate"
    finally:
        release.set()
        manager.close()
