"""regions.trace: what a recorder sees of decorated calls (hit, miss, stale, error; sync and async;
memory and memcached), that nothing is recorded outside one, and that tracing costs nothing once off.

Real regions throughout: the memcached ones talk to the session server (or to a port where nothing
listens, for errors); the memory region that fails is a real memory store whose reads raise while
``broken`` is set (a backend loaded by its ``package.module:Class`` path, as third-party ones are).
"""

from __future__ import annotations

import asyncio
import sys
import threading
import time
from collections.abc import Hashable
from typing import Any

import pytest

from regions import trace
from regions.backends.contract import Entry
from regions.backends.memory import MemoryNamespaceManager, MemoryStore

EXPIRES = 0.05  # seconds: the functions under test store short-lived entries, then serve them stale
BROKEN = "tests.test_trace:BrokenMemoryNamespace"
sys.modules.setdefault("tests.test_trace", sys.modules[__name__])  # BROKEN names this very module


class BrokenMemoryStore(MemoryStore):
    broken = False

    def namespace(self, namespace: str) -> BrokenMemoryNamespace:
        return BrokenMemoryNamespace(namespace, self)


class BrokenMemoryNamespace(MemoryNamespaceManager):
    store_class = BrokenMemoryStore
    store: BrokenMemoryStore

    def get_entry(self, key: Hashable) -> Entry | None:
        if self.store.broken:
            raise ConnectionError("broken on purpose")
        return super().get_entry(key)


@pytest.fixture(params=["memory", "memcached"])
def manager(request, make_manager, region_config, dead_address):
    """A manager with the region under test ("cache") and a failing one ("down") of the same kind."""
    if request.param == "memory":
        config = {"cache": {"BACKEND": BROKEN}, "down": {"BACKEND": BROKEN}}
    else:
        down = region_config("memcached", LOCATION=dead_address)
        config = {"cache": region_config("memcached"), "down": down}
    made = make_manager(config)
    if request.param == "memory":
        made["down"].store.broken = True
    return made


def outcomes(recorder: trace.Recorder) -> list[tuple[str, str, str]]:
    return [(c.region, c.function.rsplit(".", 1)[-1], c.outcome) for c in recorder.calls]


class Slow:
    """``call(x)`` stores entries living EXPIRES seconds; while ``hold`` is set, a computation waits
    until the test releases it (meanwhile other callers are served the expired value)."""

    def __init__(self) -> None:
        self.runs = 0
        self.hold = False
        self.started = threading.Event()
        self.release = threading.Event()

    def compute(self, x: int) -> str:
        self.runs += 1
        if self.hold:
            self.started.set()
            assert self.release.wait(10)
        return f"value {x} #{self.runs}"


def test_sync_outcomes(manager: Any) -> None:
    slow = Slow()

    @manager.region("cache", timeout=EXPIRES)
    def item(x: int) -> str:
        return slow.compute(x)

    @manager.region("down")
    def broken(x: int) -> int:
        return x

    item(1)
    time.sleep(EXPIRES * 2)  # expired, still servable (stale: 30 s)
    leader = threading.Thread(target=item, args=(1,))  # recomputes, holding the flight
    with trace.Recorder() as recorder:
        item(2)
        item(2)
        slow.hold = True
        leader.start()
        assert slow.started.wait(10)
        assert item(1) == "value 1 #1"  # served the expired value while the leader computes
        slow.release.set()
        leader.join(10)
        assert broken(3) == 3
        assert broken(3) == 3
    assert outcomes(recorder) == [
        ("cache", "item", "miss"),
        ("cache", "item", "hit"),
        ("cache", "item", "stale"),
        ("down", "broken", "error"),
        ("down", "broken", "error"),
    ]
    assert [c.key for c in recorder.calls] == ["i2", "i2", "i1", "i3", "i3"]
    assert all(c.seconds > 0 for c in recorder.calls)
    assert recorder.calls[2].seconds < 1  # the stale value was not waited for
    totals = recorder.totals()
    assert totals["cache"] == {**totals["cache"], "calls": 3, "hit": 1, "miss": 1, "stale": 1, "error": 0}
    assert totals["down"]["error"] == totals["down"]["calls"] == 2
    assert not trace.ON


def test_async_outcomes(manager: Any) -> None:
    runs = 0

    @manager.region("cache", timeout=EXPIRES)
    async def item(x: int) -> str:
        nonlocal runs
        runs += 1
        if x == 1 and runs > 1:
            started.set()
            await release.wait()
        return f"value {x} #{runs}"

    @manager.region("down")
    async def broken(x: int) -> int:
        return x

    async def scenario() -> trace.Recorder:
        await item(1)
        await asyncio.sleep(EXPIRES * 2)
        with trace.Recorder() as recorder:
            await item(2)
            await item(2)
            leader = asyncio.create_task(item(1))  # recorded too: the task copies the context
            await asyncio.wait_for(started.wait(), 10)
            assert await item(1) == "value 1 #1"
            release.set()
            assert await leader == "value 1 #3"
            assert await broken(3) == 3
        return recorder

    started, release = asyncio.Event(), asyncio.Event()
    recorder = asyncio.run(scenario())
    assert outcomes(recorder) == [
        ("cache", "item", "miss"),
        ("cache", "item", "hit"),
        ("cache", "item", "miss"),  # the leader
        ("cache", "item", "stale"),
        ("down", "broken", "error"),
    ]
    assert recorder.totals()["cache"]["calls"] == 4


def test_waiting_for_another_callers_value_is_a_hit(make_manager, region_config) -> None:
    manager = make_manager({"mc": region_config("memcached")})
    slow = Slow()
    slow.hold = True

    @manager.region("mc")
    def item(x: int) -> str:
        return slow.compute(x)

    leader = threading.Thread(target=item, args=(1,))
    leader.start()
    assert slow.started.wait(10)
    with trace.Recorder() as recorder:
        threading.Timer(0.05, slow.release.set).start()
        assert item(1) == "value 1 #1"  # nothing stored yet: waits for the leader's flight
    leader.join(10)
    assert outcomes(recorder) == [("mc", "item", "hit")]


def test_nested_and_tagged_calls_keep_their_own_outcomes(make_manager, region_config, dead_address) -> None:
    manager = make_manager(
        {"mem": {"BACKEND": "memory"}, "down": region_config("memcached", LOCATION=dead_address)}
    )

    @manager.region("mem", tags=lambda x: [f"x:{x}"])
    def inner(x: int) -> int:
        return x

    @manager.region("mem")
    def outer(x: int) -> int:
        manager["down"].set("k", x)  # fails: not the outer call's error
        return inner(x) + 1

    inner(1)
    with trace.Recorder() as recorder:
        assert outer(1) == 2
        assert outer(1) == 2
    assert outcomes(recorder) == [("mem", "outer", "miss"), ("mem", "inner", "hit"), ("mem", "outer", "hit")]
    assert recorder.calls[0].seconds >= recorder.calls[1].seconds


def test_nothing_is_recorded_outside_a_recorder(make_manager) -> None:
    manager = make_manager({"mem": {"BACKEND": "memory"}})

    @manager.region("mem")
    def item(x: Any) -> Any:
        return x

    item(1)
    other = trace.Recorder()
    with trace.Recorder() as recorder:
        assert trace.current() is recorder
        thread = threading.Thread(target=lambda: [item(1), item([2])])  # a context of its own
        thread.start()
        thread.join()
        with other:
            item(3)  # the inner recorder's, not the outer one's
        item(4)
    item(5)
    assert trace.current() is None
    assert [c.key for c in recorder.calls] == ["i4"]
    assert [c.key for c in other.calls] == ["i3"]


def test_the_inline_hit_path_is_back_once_tracing_is_off(make_manager) -> None:
    """The inline hit of in-process stores skips Region.read (it counts hits, not backend calls):
    while tracing is on, every hit goes through the read; once off, they skip it again."""
    manager = make_manager({"mem": {"BACKEND": "memory"}})
    stats = manager["mem"].counts

    @manager.region("mem")
    def item(x: int) -> int:
        return x

    def reads_per_hit() -> int:
        item(1)  # rebinds if tracing was switched since the last call
        before = stats.calls, stats.hits
        for _ in range(10):
            item(1)
        assert stats.hits - before[1] == 10
        return stats.calls - before[0]

    assert not trace.ON
    assert reads_per_hit() == 0
    recorder = trace.Recorder().start()
    try:
        assert trace.ON
        assert reads_per_hit() == 10
        done: list[int] = []  # another thread, no recorder: traced path, nothing recorded
        thread = threading.Thread(target=lambda: done.append(reads_per_hit()))
        thread.start()
        thread.join()
        assert done == [10]
    finally:
        recorder.stop()
        recorder.stop()  # idempotent
    assert not trace.ON
    assert reads_per_hit() == 0
    assert len(recorder.calls) == 11
