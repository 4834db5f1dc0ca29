"""Concurrency: one computation per missing key, isolated request scopes, stale-while-revalidate."""

from __future__ import annotations

import asyncio
import contextvars
import gc
import threading
import time
import weakref
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import pytest

import regions

SHARED_BACKENDS = ("memcached", "file", "memory")


@pytest.mark.parametrize("backend", SHARED_BACKENDS)
def test_twenty_threads_missing_one_key_compute_it_once(backend, region_config, make_manager, counter):
    manager = make_manager({"r": region_config(backend, TIMEOUT=60)})

    @manager.region("r")
    def slow(x):
        n = counter()
        time.sleep(0.2)
        return (x, n)

    barrier = threading.Barrier(20)
    results: list = []
    errors: list = []

    def worker():
        try:
            barrier.wait(timeout=10)
            results.append(slow("k"))
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(20)]
    start = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    elapsed = time.monotonic() - start
    assert errors == []
    assert counter.count == 1, f"computed {counter.count} times"
    assert results == [("k", 1)] * 20
    assert elapsed < 5, f"waiters took {elapsed:.1f}s"
    assert manager["r"].stats()["errors"] == 0


@pytest.mark.parametrize("backend", ["memcached", "file"])
def test_two_managers_share_the_creation_lock(backend, region_config, make_manager, counter):
    """Two managers on the same storage behave like two processes: still one computation."""
    # memcached locks across processes only on request (distributed_lock); files always do.
    options = {"distributed_lock": True} if backend == "memcached" else {}
    conf = region_config(backend, TIMEOUT=60, OPTIONS=options)
    first = make_manager({"r": conf}, key_prefix="shared-lock")
    second = make_manager({"r": dict(conf)}, key_prefix="shared-lock")
    first["r"].clear()

    def slow():
        n = counter()
        time.sleep(0.3)
        return n

    fa, fb = first.region("r")(slow), second.region("r")(slow)
    barrier = threading.Barrier(10)
    results: list = []

    def worker(fn):
        barrier.wait(timeout=10)
        results.append(fn())

    threads = [threading.Thread(target=worker, args=(fa if i % 2 else fb,)) for i in range(10)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert counter.count == 1
    assert results == [1] * 10


WHO: contextvars.ContextVar[int] = contextvars.ContextVar("who")


@pytest.fixture
def request_manager(region_config, make_manager):
    return make_manager({"req": region_config("request")})


def test_request_scopes_in_50_threads_are_isolated(request_manager):
    region = request_manager["req"]
    local = threading.local()

    @request_manager.region("req")
    def whoami():
        return local.ident

    barrier = threading.Barrier(50)
    seen: dict[int, list] = {}
    errors: list = []

    def worker(i):
        try:
            local.ident = i
            with regions.request_scope():
                assert region.active
                first = whoami()
                region.set("mine", i)
                barrier.wait(timeout=10)  # everybody has cached their value now
                local.ident = -1  # a recomputation would show up as -1
                second = whoami()
                barrier.wait(timeout=10)
                seen[i] = [first, second, region.get("mine"), region.count()]
            assert not region.active
            assert whoami() == -1  # outside the scope: uncached, straight to the function
        except Exception as exc:
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(50)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert errors == []
    assert seen == {i: [i, i, i, 2] for i in range(50)}


def test_request_scopes_in_50_tasks_are_isolated(request_manager):
    region = request_manager["req"]
    calls: list = []

    @request_manager.region("req")
    async def whoami():
        calls.append(WHO.get())
        await asyncio.sleep(0)
        return WHO.get()

    async def task(i, barrier):
        WHO.set(i)
        async with regions.request_scope():
            first = await whoami()
            region.set("mine", i)
            await barrier.wait()
            WHO.set(-1)
            second = await whoami()
            await asyncio.sleep(0)
            return [first, second, region.get("mine")]

    async def main():
        barrier = asyncio.Barrier(50)
        return await asyncio.gather(*(task(i, barrier) for i in range(50)))

    results = asyncio.run(main())
    assert results == [[i, i, i] for i in range(50)]
    assert sorted(calls) == list(range(50))


def test_scoped_executor_shares_the_scope_and_plain_executor_does_not(request_manager, counter):
    @request_manager.region("req")
    def compute(x):
        return (x, counter())

    with regions.request_scope():
        with regions.ScopedThreadPoolExecutor(max_workers=4) as pool:
            in_worker = [f.result() for f in [pool.submit(compute, 1) for _ in range(4)]]
            assert list(pool.map(compute, [1, 1])) == [(1, 1)] * 2
        assert compute(1) == (1, 1)  # the worker's value is visible to the submitter
        assert in_worker == [(1, 1)] * 4
        assert counter.count == 1

        with ThreadPoolExecutor(max_workers=2) as plain:
            first = plain.submit(compute, 2).result()
            second = plain.submit(compute, 2).result()
        assert first != second  # no scope in a plain worker: every call computes
        assert counter.count == 3
        assert compute(2) == (2, 4)  # and nothing leaked into the submitter's scope
        assert compute(2) == (2, 4)


class Payload:
    def __init__(self, n):
        self.n = n


def test_request_scope_lifecycle(request_manager, counter):
    region = request_manager["req"]

    @request_manager.region("req")
    def load(x):
        return Payload((x, counter()))

    assert not region.active and region.count() is None
    assert load(1).n == (1, 1) and load(1).n == (1, 2)  # outside any scope: uncached
    region.set("k", 1)
    assert region.get("k", "missing") == "missing"

    with regions.request_scope() as scope:
        kept = weakref.ref(load(1))
        assert load(1) is kept()
        with regions.request_scope():  # nested: starts empty, outer comes back afterwards
            assert load(1).n == (1, 4)
            assert region.count() == 1
        assert load(1) is kept()
        assert len(scope) == 1
    gc.collect()
    assert kept() is None, "the scope's values outlived it"
    with regions.request_scope():
        assert load(1).n == (1, 5)  # a new scope starts empty


def expiry(backend: str, request: pytest.FixtureRequest) -> Callable[[], None]:
    """What makes an entry of TIMEOUT 1 expire: 2.1 s of the server's clock for memcached (it has
    1 s resolution), the test's clock moved on by as much for the others (asked for here, before
    the manager is built)."""
    if backend == "memcached":
        return lambda: time.sleep(2.1)
    clock = request.getfixturevalue("fake_clock")
    return lambda: clock.advance(2.1)


@pytest.mark.parametrize("backend", SHARED_BACKENDS)
def test_stale_value_served_while_one_caller_regenerates(backend, region_config, make_manager, request):
    expire = expiry(backend, request)
    manager = make_manager({"r": region_config(backend, TIMEOUT=1, OPTIONS={"stale": 30})})
    generation = [0]
    started = threading.Event()
    release = threading.Event()

    @manager.region("r")
    def page():
        generation[0] += 1
        if generation[0] > 1:
            started.set()
            release.wait(timeout=10)
        return f"v{generation[0]}"

    assert page() == "v1"
    expire()  # expired, still within stale

    regenerated: list = []
    regenerator = threading.Thread(target=lambda: regenerated.append(page()))
    regenerator.start()
    assert started.wait(timeout=5), "no caller started regenerating the expired value"

    # While the regeneration is blocked, other callers get the stale value at once.
    t0 = time.monotonic()
    served = [page() for _ in range(3)]
    waited = time.monotonic() - t0
    release.set()
    regenerator.join(timeout=10)

    assert served == ["v1"] * 3
    assert waited < 1.0, f"callers waited {waited:.2f}s for the regeneration"
    assert regenerated == ["v2"]
    assert page() == "v2"
    assert generation[0] == 2


@pytest.mark.parametrize("backend", SHARED_BACKENDS)
def test_without_stale_callers_wait_for_the_new_value(backend, region_config, make_manager, request):
    expire = expiry(backend, request)
    manager = make_manager({"r": region_config(backend, TIMEOUT=1, OPTIONS={"stale": 0})})
    generation = [0]
    started = threading.Event()

    @manager.region("r")
    def page():
        generation[0] += 1
        if generation[0] > 1:
            started.set()
            time.sleep(0.5)
        return f"v{generation[0]}"

    assert page() == "v1"
    expire()
    regenerator = threading.Thread(target=page)
    regenerator.start()
    assert started.wait(timeout=5)
    assert page() == "v2"  # waited for the running computation instead of serving v1
    regenerator.join(timeout=10)
    assert generation[0] == 2


@pytest.mark.parametrize("backend", SHARED_BACKENDS)
def test_failed_computation_releases_the_creation_lock(backend, region_config, make_manager):
    manager = make_manager({"r": region_config(backend, OPTIONS={"lock_timeout": 5})})
    calls: list = []

    @manager.region("r")
    def flaky():
        calls.append(threading.current_thread().name)
        if len(calls) == 1:
            raise RuntimeError("first computation fails")
        return "ok"

    with pytest.raises(RuntimeError):
        flaky()
    results: list = []
    start = time.monotonic()
    other = threading.Thread(target=lambda: results.append(flaky()), name="other")
    other.start()
    other.join(timeout=10)
    assert results == ["ok"]
    assert time.monotonic() - start < 1.0, "the failed computation kept the creation lock"
    assert flaky() == "ok" and len(calls) == 2


@pytest.mark.parametrize("backend", SHARED_BACKENDS)
def test_twenty_tasks_missing_one_key_compute_it_once(backend, region_config, make_manager):
    manager = make_manager({"r": region_config(backend)})
    calls: list = []

    @manager.region("r")
    async def slow(x):
        calls.append(x)
        await asyncio.sleep(0.1)
        return [x]

    async def main():
        return await asyncio.gather(*(slow("k") for _ in range(20)))

    assert asyncio.run(main()) == [["k"]] * 20
    assert calls == ["k"]


def test_nested_cached_calls_in_opposite_order_do_not_stall(region_config, make_manager):
    """Thread A: outer(a, b) -> inner(b); thread B: outer(b, a) -> inner(a), both at once.

    Each creation lock covers one key (the file backend locks one byte per key of its lock file), so
    holding outer's lock never blocks another thread's inner call: no lock-order inversion, however
    the keys hash. Nested cached calls are ordinary (a view calling cached helpers): no stall.
    """
    manager = make_manager({"f": region_config("file", OPTIONS={"lock_timeout": 3})})
    barrier = threading.Barrier(2)

    @manager.region("f")
    def inner(i):
        return i

    @manager.region("f")
    def outer(i, j):
        barrier.wait(timeout=10)  # both threads hold their outer creation lock now
        return (i, inner(j))

    for a, b in ((1, 2), ("x", "y"), (10, 20)):
        results: list = []
        threads = [threading.Thread(target=lambda x=x, y=y, out=results: out.append(outer(x, y)))
                   for x, y in ((a, b), (b, a))]
        start = time.monotonic()
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=30)
        elapsed = time.monotonic() - start
        assert sorted(results, key=repr) == sorted([(a, b), (b, a)], key=repr)
        assert elapsed < 1.5, f"nested calls {(a, b)} stalled {elapsed:.1f}s (lock_timeout is 3 s)"
