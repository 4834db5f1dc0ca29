"""An invalidation made while a value is being computed wins over that computation, and only
over the computations it covers.

The computation read its data before the invalidation; storing its result afterwards would serve
replaced data for the entry's whole lifetime. An invalidation of the key, of its function's
namespace (``invalidate_all``) or of the region (``clear``) therefore keeps the result from being
stored, whether it is made in this process or applied from another process's invalidation log
(synced and tiered regions). An invalidation of another key or another namespace does not: the
result is stored (before, any invalidation in the region threw away every result being computed in
it). A tag invalidation needs no such check: the entry is stored with the tag versions read before
the computation, which the bump made old. The function is held inside its computation by an event
(not a sleep), so the invalidation lands in the middle every time.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from regions.engine.marks import RING
from tests import sync_workers as w

KINDS = ["invalidate", "invalidate_all", "clear", "refresh"]
#: Invalidations that do not cover ``price(1)``.
UNRELATED = ["delete_other", "invalidate_other_key", "invalidate_all_other_function"]


def _invalidate(kind: str, f: Any, region: Any, other: Any = None) -> None:
    if kind == "invalidate":
        f.invalidate(1)
    elif kind == "invalidate_all":
        f.invalidate_all()
    elif kind == "clear":
        region.clear()
    elif kind == "refresh":
        f.refresh(1)
    elif kind == "delete_other":
        region.delete("another key")  # the region's own namespace
    elif kind == "invalidate_other_key":
        f.invalidate(2)  # the same namespace, another key
    elif kind == "invalidate_all_other_function":
        other.invalidate_all()  # another namespace
    else:
        raise ValueError(kind)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("backend", ["memory", "file", "memcached"])
def test_invalidation_during_a_computation_is_not_overwritten(backend, kind, region_config, make_manager):
    manager = make_manager({"r": region_config(backend, TIMEOUT=300)})
    region = manager["r"]
    data = {"price": "old"}
    inside, release = threading.Event(), threading.Event()

    @manager.region("r")
    def price(item: int) -> str:
        seen = data["price"]  # the computation reads its data ...
        if threading.current_thread().name == "slow":
            inside.set()
            assert release.wait(10)  # ... and is still running when the data changes
        return seen

    results: list[str] = []
    slow = threading.Thread(target=lambda: results.append(price(1)), name="slow")
    slow.start()
    assert inside.wait(10)
    data["price"] = "new"
    _invalidate(kind, price, region)
    release.set()
    slow.join(10)
    assert results == ["old"]  # that caller gets what it computed
    assert price(1) == "new", f"{kind} during the computation was overwritten by its result"


def test_async_invalidation_during_a_computation_is_not_overwritten(region_config, make_manager):
    manager = make_manager({"r": region_config("memcached", TIMEOUT=300)})
    data = {"price": "old"}

    async def scenario() -> tuple[str, str]:
        inside, release = asyncio.Event(), asyncio.Event()
        first = [True]

        @manager.region("r")
        async def price(item: int) -> str:
            seen = data["price"]
            if first[0]:
                first[0] = False
                inside.set()
                await release.wait()
            return seen

        task = asyncio.create_task(price(1))
        await asyncio.wait_for(inside.wait(), 10)
        data["price"] = "new"
        assert await price.invalidate(1) is True
        release.set()
        return await task, await price(1)

    assert asyncio.run(scenario()) == ("old", "new")


@pytest.mark.parametrize("kind", UNRELATED)
@pytest.mark.parametrize("backend", ["memory", "file", "memcached"])
def test_an_unrelated_invalidation_during_a_computation_does_not_stop_its_store(
    backend, kind, region_config, make_manager
):
    """Another key, or another function's namespace, invalidated in the middle of ``price(1)``'s
    computation: the result is stored, and the next call is a hit."""
    manager = make_manager({"r": region_config(backend, TIMEOUT=300)})
    region = manager["r"]
    inside, release = threading.Event(), threading.Event()
    computed: list[int] = []

    @manager.region("r")
    def price(item: int) -> str:
        computed.append(item)
        if threading.current_thread().name == "slow":
            inside.set()
            assert release.wait(10)
        return f"price {item}"

    @manager.region("r")
    def stock(item: int) -> int:
        return item

    slow = threading.Thread(target=price, args=(1,), name="slow")
    slow.start()
    assert inside.wait(10)
    _invalidate(kind, price, region, stock)
    release.set()
    slow.join(10)
    assert price(1) == "price 1"
    assert computed == [1], f"{kind} during the computation of price(1) kept its result from being stored"


@pytest.mark.parametrize("kind", UNRELATED)
@pytest.mark.parametrize("backend", ["memory", "memcached"])
def test_a_busy_region_still_stores(backend, kind, region_config, make_manager):
    """A 20 ms function called 20 times in a row while another thread invalidates something else
    every 5 ms is computed once (before: 20 times, never stored), as in a quiet region."""
    manager = make_manager({"r": region_config(backend, TIMEOUT=300)})
    region = manager["r"]
    invalidations = [0]
    #: Invalidations made during each computation.
    during: list[int] = []

    @manager.region("r")
    def report(item: int) -> str:
        before = invalidations[0]
        time.sleep(0.02)
        during.append(invalidations[0] - before)
        return f"report {item}"

    @manager.region("r")
    def stock(item: int) -> int:
        return item

    stop, started = threading.Event(), threading.Event()

    def invalidate_other() -> None:
        while not stop.is_set():
            _invalidate(kind, report, region, stock)
            invalidations[0] += 1
            started.set()
            time.sleep(0.005)

    other = threading.Thread(target=invalidate_other)
    other.start()
    try:
        assert started.wait(10)
        assert [report(1) for _ in range(20)] == ["report 1"] * 20
    finally:
        stop.set()
        other.join(10)
    print(f"\n{backend} {kind}: {len(during)} computations of 20 calls; invalidations during each: {during}")
    assert sum(during) > 0, "no invalidation was made during a computation: the test proves nothing"
    assert len(during) == 1, f"computed {len(during)} times in 20 calls"


@pytest.mark.parametrize(("deletes", "stored"), [(RING - 1, True), (RING, False)])
def test_more_invalidations_than_are_kept_count_as_covering(deletes, stored, make_manager):
    """A region keeps its last :data:`RING` invalidations: a computation during which more were made
    cannot tell whether one covered its key, and does not store (as before for any invalidation)."""
    manager = make_manager({"r": {"BACKEND": "memory", "TIMEOUT": 300}})
    region = manager["r"]
    inside, release = threading.Event(), threading.Event()
    computed: list[int] = []

    @manager.region("r")
    def price(item: int) -> str:
        computed.append(item)
        if threading.current_thread().name == "slow":
            inside.set()
            assert release.wait(10)
        return f"price {item}"

    slow = threading.Thread(target=price, args=(1,), name="slow")
    slow.start()
    assert inside.wait(10)
    for i in range(deletes):
        region.delete(f"other {i}")
    release.set()
    slow.join(10)
    assert price(1) == "price 1"
    assert computed == ([1] if stored else [1, 1])


# --- invalidations applied from another process's log ----------------------------------------

INTERVAL = 0.1


@pytest.mark.parametrize("region", ["local", "hot"])
@pytest.mark.parametrize(
    ("op", "x", "stored"),
    [
        ("key", 1, False),
        ("namespace", 1, False),
        ("clear", 1, False),
        ("tags", 1, False),  # no mark: the entry carries the tag versions read before the computation
        ("key", 2, True),
        ("tags", 2, True),
    ],
)
def test_an_invalidation_from_another_process_during_a_computation(
    memcached_server: str, tmp_path: Path, region: str, op: str, x: int, stored: bool
) -> None:
    """``value(1)`` (a synced memory region, a tiered region) is being computed in this process when
    a spawned process invalidates: key 1, the function's namespace, the region, tag ``item:1``; or
    key 2, tag ``item:2``. This process applies the record from the log before the computation ends.
    What covers key 1 wins over the computation (the next call computes the new version); what does
    not leaves its result stored (the next call is a hit)."""
    data = str(tmp_path / "data.txt")
    w.write_version(data, 1)
    settings = {
        "config": w.config(memcached_server, str(tmp_path / "files"), INTERVAL),
        "prefix": "i" + uuid.uuid4().hex[:10],
        "secret": "sync-secret-" + uuid.uuid4().hex,
        "tagged": op == "tags",
    }
    inside, release = threading.Event(), threading.Event()

    def hold() -> None:
        if threading.current_thread().name == "slow":
            inside.set()
            assert release.wait(30)

    manager = w.build(settings)
    try:
        log = str(tmp_path / "computed-test.log")
        value = w.make_reader(manager, region, data, log, settings["tagged"], hold)
        results: list[Any] = []
        slow = threading.Thread(target=lambda: results.append(value(1)), name="slow")
        slow.start()
        assert inside.wait(10)
        w.write_version(data, 2)
        ctx = multiprocessing.get_context("spawn")
        other_log = str(tmp_path / "computed-other.log")
        other = ctx.Process(target=w.invalidate_once, args=(settings, region, data, other_log, op, x))
        other.start()
        other.join(60)
        assert other.exitcode == 0, f"the invalidating process exited with {other.exitcode}"
        received = manager[region].stats()
        deadline = time.monotonic() + 10
        while received["received_invalidations"] + received["received_clears"] == 0:
            assert time.monotonic() < deadline, f"the {op} record was not applied within 10 s: {received}"
            time.sleep(INTERVAL / 2)
            manager[region].get("probe")  # a read looks at the log once sync_interval has passed
            received = manager[region].stats()
        release.set()
        slow.join(10)
        assert results == [(1, 1)]  # that caller gets what it computed
        if stored:
            assert value(1) == (1, 1), f"the {op} of {x} kept the computation of 1 from being stored"
            assert w.computed(log) == [1]
        else:
            assert value(1) == (1, 2), f"the {op} of {x} from another process was overwritten"
            assert w.computed(log) == [1, 1]
    finally:
        release.set()
        manager.close()
