"""Synced and tiered regions when the memcached server holding their log hangs, dies or restarts.

What they promise: while the log cannot be read, a process serves only local entries stored less
than ``sync_interval`` ago (an invalidation made elsewhere meanwhile could not be seen), never an
exception; once it can be read again, nothing invalidated meanwhile is served (an invalidation made
during the outage is replayed; a restart, which loses the log, makes every process drop its local
entries). The other process is a real one (``multiprocessing`` spawn).

Each test runs with the log on memcached, and on Redis twice: with push (the default: a waiter
connection applies invalidations as they come) and with ``push: False`` (the polling path alone), so
the degraded mode of both paths is held to the same promises.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests import sync_workers as w
from tests.faults.conftest import FaultyMemcached, FaultyRedis
from tests.faults.proxy import Proxy

INTERVAL = 0.3
BOUND = INTERVAL + 0.5
OPTIONS = {"timeout": 0.3, "connect_timeout": 0.3, "retry_interval": 0.2}
REDIS_OPTIONS = {"socket_timeout": 0.3, "connect_timeout": 0.3, "retry_interval": 0.2}
BACKENDS = ["memcached", "redis-push", "redis-poll"]


def make_config(address: str, tmp_path: Path, backend: str, timeout: float | None = None) -> dict[str, Any]:
    """:func:`tests.sync_workers.config`, its shared region "functions" at ``address`` on memcached
    or Redis (``redis-poll``: the synced and tiered regions with ``push: False``)."""
    config = w.config(address, str(tmp_path / "files"), INTERVAL)
    if backend == "memcached":
        over = {"timeout": timeout, "connect_timeout": timeout} if timeout else {}
        config["functions"]["OPTIONS"] = {**OPTIONS, **over}
        return config
    over = {"socket_timeout": timeout, "connect_timeout": timeout} if timeout else {}
    config["functions"] = {"BACKEND": "redis", "LOCATION": f"redis://{address}/0", "TIMEOUT": 300,
                           "OPTIONS": {**REDIS_OPTIONS, **over}}
    for name in ("local", "hot"):
        config[name]["OPTIONS"]["push"] = backend == "redis-push"
    return config


def settings(address: str, tmp_path: Path, backend: str = "memcached") -> dict[str, Any]:
    return {"config": make_config(address, tmp_path, backend), "prefix": "f" + uuid.uuid4().hex[:10],
            "secret": "s" * 20 + uuid.uuid4().hex, "target": 2, "changed": [2], "tagged": False}


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
def server(
    backend: str, faulty_memcached: Callable[..., FaultyMemcached], faulty_redis: Callable[..., FaultyRedis]
) -> Any:
    srv = faulty_memcached() if backend == "memcached" else faulty_redis()
    yield srv
    srv.kill()


@pytest.mark.parametrize("region", ["local", "hot"])
@pytest.mark.parametrize("fault", ["pause", "kill"])
def test_while_the_log_is_unreadable_only_young_entries_are_served(
    backend: str, server: FaultyMemcached | FaultyRedis, tmp_path: Path, region: str, fault: str
) -> None:
    s = settings(server.address, tmp_path, backend)
    data = str(tmp_path / "data.txt")
    w.write_version(data, 1)
    manager = w.build(s)
    try:
        value = w.make_reader(manager, region, data, str(tmp_path / "log"))
        assert value(1) == (1, 1)
        assert manager[region].store.sync.pushes is (backend == "redis-push")
        time.sleep(INTERVAL + 0.05)  # the entry is now older than sync_interval
        getattr(server, fault)()
        w.write_version(data, 2)  # changed elsewhere, by a process whose invalidation cannot travel
        start = time.monotonic()
        first = value(1)
        took = time.monotonic() - start
        assert first == (1, 2), "an entry older than sync_interval was served while the log was unreadable"
        assert took < 1.5, f"the first call took {took:.2f} s"
        served, slowest = [], 0.0
        for _ in range(50):  # young entries (stored just now) are served again
            begin = time.monotonic()
            served.append(value(1))
            slowest = max(slowest, time.monotonic() - begin)
        print(f"\n{backend} {region} {fault}: first call {took:.3f} s, slowest of the next 50 "
              f"{slowest:.3f} s, computed {w.computed(str(tmp_path / 'log')).count(1)}, "
              f"stats {manager[region].stats()}")
        assert served == [(1, 2)] * 50
        assert w.computed(str(tmp_path / "log")).count(1) <= 3
        stats = manager[region].stats()
        assert stats["sync_failures"] >= 1
    finally:
        if fault == "pause":
            server.resume()
        manager.close()


@pytest.mark.parametrize("region", ["local", "hot"])
@pytest.mark.parametrize("when", ["dropped", "paused", "killed", "after_restart"])
def test_an_invalidation_around_an_outage_reaches_the_other_process(
    backend: str, server: FaultyMemcached | FaultyRedis, tmp_path: Path, region: str, when: str
) -> None:
    """The test process invalidates key 2 while its link to memcached drops every byte (the record
    is queued and replayed when the link heals: the log is intact, so the other process drops key 2
    only), while memcached hangs (its queued ``incr`` may run when it resumes, leaving a number
    without a record: the other process then drops everything), while it is dead, or after it
    restarted empty (the log is lost: a reset too). A spawned process watching the keys sees the
    new value of key 2 soon after the server is back."""
    s = settings(server.address, tmp_path, backend)
    data = str(tmp_path / "data.txt")
    w.write_version(data, 1)
    link = Proxy(server.address)
    mine = {**s, "config": make_config(link.address, tmp_path, backend)}
    manager = w.build(mine)  # through the proxy; the other process reaches memcached directly
    value = w.make_reader(manager, region, data, str(tmp_path / "log-test"))
    ctx = multiprocessing.get_context("spawn")
    ready, out, go = ctx.Queue(), ctx.Queue(), ctx.Event()
    keys = [1, 2, 3]
    proc = ctx.Process(
        target=w.watch,
        args=(s, region, data, str(tmp_path / "log-0"), keys, ready, go, out, time.monotonic() + 60),
    )
    try:
        assert [value(x) for x in keys] == [(x, 1) for x in keys]
        proc.start()
        w.wait_ready(ready, [proc])
        if when == "dropped":
            link.mode = "drop"
        else:
            server.pause() if when == "paused" else server.kill()
        w.write_version(data, 2)
        if when == "dropped":
            assert value.invalidate(2) is False  # did not reach the server: queued, replayed
            link.mode = "pass"
        elif when == "paused":
            assert value.invalidate(2) is False  # did not reach the server: queued, replayed
            server.resume()
        elif when == "killed":
            assert value.invalidate(2) is False
            server.start()
        else:
            server.start()
            time.sleep(0.5)  # the breaker's probe finds it
            assert value.invalidate(2) in (True, False)
        back = time.monotonic()
        go.set()
        _pid, seen, stats = out.get(timeout=90)
        assert 2 in seen, "the other process kept serving the invalidated value"
        print(f"\n{backend} {region} {when}: the other process saw key 2's new value "
              f"{seen[2] - back:.3f} s after the server was back; it dropped {sorted(seen)}, stats {stats}")
        assert seen[2] - back < BOUND + 1.0, f"seen {seen[2] - back:.2f} s after the server was back"
        if when == "dropped":  # the replayed record, not a reset: the other keys stayed cached
            assert sorted(seen) == [2] and stats["resets"] == 0, repr((seen, stats))
    finally:
        proc.join(30)
        if proc.is_alive():
            proc.kill()
        manager.close()
        link.close()


def test_a_hung_log_never_stalls_an_event_loop(
    backend: str, server: FaultyMemcached | FaultyRedis, tmp_path: Path
) -> None:
    """Coroutines cached in a synced region: the look at the log, due while the server hangs (its
    timeout is 1 s here), runs on a thread; the loop's longest pause stays far below the timeout."""
    s = settings(server.address, tmp_path, backend)
    s["config"] = make_config(server.address, tmp_path, backend, timeout=1.0)
    manager = w.build(s)
    calls = []

    @manager.region("local")
    async def double(x: int) -> int:
        calls.append(x)
        return 2 * x

    async def run() -> float:
        assert await double(1) == 2
        server.pause()
        longest, last = 0.0, time.monotonic()
        stop = last + 3 * INTERVAL + 1.0
        while time.monotonic() < stop:
            assert await double(1) == 2
            await asyncio.sleep(0.005)
            now = time.monotonic()
            longest, last = max(longest, now - last), now
        return longest

    try:
        longest = asyncio.run(run())
        print(f"\n{backend}: the loop's longest pause while the log hung: {longest:.3f} s")
        assert longest < 0.5, f"the event loop stalled {longest:.2f} s on the hung log"
        assert manager["local"].stats()["sync_failures"] >= 1, "the log was never looked at"
    finally:
        server.resume()
        manager.close()
