"""Connections of a memcached region: after a fork, under threads that come and go, and the parts
of large values under concurrent writers.

* A child forked after its parent used the region never uses the parent's sockets: no error, every
  value right, in each child and in the parent calling at the same time.
* 500 short-lived threads, 50 at once: the process holds at most ``max_connections`` sockets to the
  server afterwards (counted in ``/proc`` and by memcached's ``curr_connections``); 32 by default.
* Writers of one key whose value is split into parts never make readers miss or read a mix.
* A child forked while a parent thread computes a key does not wait for that computation (its
  thread does not exist in the child): each of its calls costs the function's own time.

All but the split values (Redis stores a value whole, up to 512 MB) hold on Redis too (``backend``
"redis": a real redis-server of the test's own; its connections counted by ``INFO clients``).
"""

from __future__ import annotations

import json
import multiprocessing
import os
import select
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest

from tests.conftest import MemcachedServer, RedisServer, memcached_stats_of
from tests.faults.workers import Computations, forked_caller, value_of

TIMEOUT = 0.5


def mc_config(address: str, backend: str = "memcached", **options: Any) -> dict[str, Any]:
    if backend == "redis":
        opts = {"socket_timeout": TIMEOUT, "connect_timeout": TIMEOUT, **options}
        url = f"redis://{address}/0"
        return {"mc": {"BACKEND": "redis", "LOCATION": url, "TIMEOUT": 300, "OPTIONS": opts}}
    opts = {"timeout": TIMEOUT, "connect_timeout": TIMEOUT, **options}
    return {"mc": {"BACKEND": "memcached", "LOCATION": address, "TIMEOUT": 300, "OPTIONS": opts}}


@pytest.fixture(params=["memcached", "redis"])
def server_of(
    request: pytest.FixtureRequest,
    memcached_factory: Callable[..., MemcachedServer],
    redis_factory: Callable[..., RedisServer],
) -> tuple[str, MemcachedServer | RedisServer]:
    """``(backend, server)``: a real memcached or redis-server of the test's own."""
    return request.param, (memcached_factory if request.param == "memcached" else redis_factory)()


def sockets_to(port: int) -> int:
    """This process's established TCP connections to ``port`` (its fds matched in /proc/net/tcp).

    Counted by distinct inode: the kernel lists /proc/net/tcp a page at a time, and when other
    sockets come and go between two pages (other test workers), it resumes at an earlier row and
    lists some twice (measured: 18 rows for 8 sockets, the count that made this test fail at times)."""
    inodes = set()
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[len("socket:[") : -1])
    connected: set[str] = set()
    for table in ("/proc/self/net/tcp", "/proc/self/net/tcp6"):
        try:
            with open(table) as f:
                rows = f.read().splitlines()[1:]
        except FileNotFoundError:
            continue
        for row in rows:
            fields = row.split()
            remote, state, inode = fields[2], fields[3], fields[9]
            if int(remote.rsplit(":", 1)[1], 16) == port and state == "01" and inode in inodes:
                connected.add(inode)
    return len(connected)


def who_holds_sockets_to(port: int) -> str:
    """For a failure message: this process's socket objects connected to ``port``, by the type of
    what holds each one and, for a redis-py connection, whether a pool still counts it."""
    import gc
    import socket as socketlib

    pools = [o for o in gc.get_objects() if type(o).__name__.endswith("ConnectionPool")]
    pooled = {id(c) for pool in pools for c in getattr(pool, "_connections", ())}
    holders: Counter[str] = Counter()
    for obj in gc.get_objects():
        if not isinstance(obj, socketlib.socket) or obj.fileno() < 0:
            continue
        try:
            if obj.getpeername()[1] != port:
                continue
        except OSError:
            continue
        for ref in gc.get_referrers(obj):
            owner = next((o for o in gc.get_referrers(ref) if hasattr(o, "_sock")), None) \
                if isinstance(ref, dict) else None
            if owner is not None:
                holders[f"{type(owner).__name__} ({'pooled' if id(owner) in pooled else 'in no pool'})"] += 1
                break
        else:
            holders["other"] += 1
    return f"{sum(holders.values())} socket objects: {dict(holders)}; {len(pools)} pools"


def curr_connections(backend: str, address: str) -> int:
    """The server's count of open client connections (one more while a Redis one is asked)."""
    if backend == "redis":
        import redis

        client = redis.Redis.from_url(f"redis://{address}/0")
        try:
            return int(client.info("clients")["connected_clients"])
        finally:
            client.close()
    return int(memcached_stats_of(address)["curr_connections"])  # type: ignore[call-overload]


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="os.fork and /proc: Linux only")
def test_forked_children_never_use_the_parent_sockets(
    server_of: Any, make_manager: Callable[..., Any]
) -> None:
    """The parent holds an open pooled socket (it just had a hit); 4 forked children make 50 calls
    each while the parent keeps calling: no error anywhere, every value right."""
    backend, server = server_of
    manager = make_manager(mc_config(server.address, backend))
    region = manager["mc"]
    comps = Computations()
    func = manager.region("mc")(comps.compute)
    func(1)
    comps.start_call()
    assert func(1) == value_of(1) and not comps.computed(), "no hit in the parent"
    assert sockets_to(server.port) >= 1, "the parent holds no socket to fork with"
    region.reset_stats()

    ctx = multiprocessing.get_context("fork")
    go, results = ctx.Event(), ctx.Queue()
    procs = [ctx.Process(target=forked_caller, args=(func, region, 50, go, results)) for _ in range(4)]
    for p in procs:
        p.start()
    children = []
    try:
        go.set()
        parent_wrong = sum(func(i % 5) != value_of(i % 5) for i in range(50))
        for _ in procs:
            children.append(results.get(timeout=30))
    finally:
        for p in procs:
            p.join(timeout=10)
            if p.is_alive():
                p.kill()
    for kind, pid, wrong, errors, stats in children:
        print(f"\n{backend} child {pid}: wrong={wrong} exceptions={len(errors)} stats={stats}")
        assert kind == "done", errors
        assert wrong == 0 and not errors, (pid, wrong, errors[:1])
        assert stats["errors"] == 0, f"child {pid}: {stats['errors']} errors (the parent's socket?)"
        assert stats.get("unavailable", 0) == 0, f"child {pid}: the server was marked down: {stats}"
        assert stats["hits"] >= 50 - 4, f"child {pid}: {stats['hits']} hits of 50 calls on 5 keys"
    parent = region.stats()
    assert parent_wrong == 0 and parent["errors"] == 0, parent


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="counts sockets in /proc")
@pytest.mark.parametrize("max_connections, bound", [(8, 8), (None, 32)])
def test_short_lived_threads_share_a_bounded_pool(
    max_connections: int | None,
    bound: int,
    server_of: Any,
    make_manager: Callable[..., Any],
) -> None:
    """500 threads (waves of 50 started together), one call each: the sockets stay bounded."""
    backend, server = server_of
    baseline = curr_connections(backend, server.address)
    options = {} if max_connections is None else {"max_connections": max_connections}
    manager = make_manager(mc_config(server.address, backend, **options))
    region = manager["mc"]
    comps = Computations()
    func = manager.region("mc")(comps.compute)
    for key in range(10):
        func(key)
    region.reset_stats()

    wrong: list[int] = []
    failures: list[BaseException] = []
    most_held = 0

    def one_call(barrier: threading.Barrier, key: int) -> None:
        try:
            barrier.wait(10)
            if func(key) != value_of(key):
                wrong.append(key)
        except BaseException as exc:
            failures.append(exc)

    seen = ""
    for wave in range(10):
        barrier = threading.Barrier(50)
        threads = [threading.Thread(target=one_call, args=(barrier, (wave * 50 + i) % 10)) for i in range(50)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=30)
        now_held = sockets_to(server.port)
        if now_held > bound and not seen:  # once (a CI run saw 36 of 32 after one wave)
            seen = f"; after wave {wave}: {now_held} held, {who_holds_sockets_to(server.port)}"
        most_held = max(most_held, now_held)

    held = sockets_to(server.port)
    deadline = time.monotonic() + 2  # memcached notices closed sockets a moment later
    opened = curr_connections(backend, server.address) - baseline
    while opened > bound and time.monotonic() < deadline:
        time.sleep(0.1)
        opened = curr_connections(backend, server.address) - baseline
    stats = region.stats()
    print(
        f"\n{backend} max_connections={max_connections}: sockets held {held} "
        f"(most after a wave {most_held}), the server counts +{opened} connections, stats {stats}"
    )
    assert not failures, repr(failures[0])
    assert not wrong, f"{len(wrong)} wrong results"
    assert held <= bound, f"the process holds {held} sockets to the server after 500 threads (bound {bound})"
    assert most_held <= bound, f"{most_held} sockets held after one wave (bound {bound}){seen}"
    assert opened <= bound, f"{backend} counts {opened} connections of this process (bound {bound})"
    assert stats["errors"] == 0, stats
    assert stats["hits"] >= 0.95 * 500, f"{stats['hits']} hits of 500 calls on 10 cached keys"


def test_concurrent_writers_of_a_value_split_in_parts(
    memcached_factory: Callable[..., MemcachedServer], make_manager: Callable[..., Any]
) -> None:
    """4 threads write one key (20 KB values, item_size 2048: ~10 parts) while 2 read it for 2 s:
    every read is a miss or one written value intact, and 80 % of reads after the first write hit
    (today about 80 % miss: every writer uses the same part keys, so a reader finds parts of two
    writes and the checksum refuses them)."""
    server = memcached_factory(memory_mb=128)  # ~4,000 writes of 20 KB, each with its own parts
    manager = make_manager(mc_config(server.address, item_size=2048))
    region = manager["mc"]
    values = [bytes([i]) * 16 + os.urandom(20_000) for i in range(4)]
    stop, written = threading.Event(), threading.Event()
    counts = {"hit": 0, "miss": 0, "mixed": 0, "early": 0}
    lock = threading.Lock()
    failures: list[BaseException] = []

    def writer(i: int) -> None:
        try:
            while not stop.is_set():
                region.set("big", values[i])
                written.set()
                time.sleep(0.001)
        except BaseException as exc:
            failures.append(exc)

    def reader() -> None:
        try:
            while not stop.is_set():
                after = written.is_set()
                found = region.get("big")
                if not after:
                    kind = "early"
                elif found is None:
                    kind = "miss"
                else:
                    kind = "hit" if found in values else "mixed"
                with lock:
                    counts[kind] += 1
                time.sleep(0.001)
        except BaseException as exc:
            failures.append(exc)

    threads = [threading.Thread(target=writer, args=(i,)) for i in range(4)]
    threads += [threading.Thread(target=reader) for _ in range(2)]
    for t in threads:
        t.start()
    time.sleep(2)
    stop.set()
    for t in threads:
        t.join(timeout=10)
    reads = counts["hit"] + counts["miss"] + counts["mixed"]
    stats = region.stats()
    print(f"\nreads after the first write: {counts}, hit rate {counts['hit'] / max(reads, 1):.0%}, {stats}")
    assert not failures, repr(failures[0])
    assert counts["mixed"] == 0, f"{counts['mixed']} reads returned a value nobody wrote"
    assert reads >= 100, counts
    assert counts["hit"] >= 0.8 * reads, f"{counts['miss']} of {reads} reads missed while writers wrote"
    assert stats["errors"] == 0, stats


def read_child(fd: int, pid: int, budget: float) -> bytes:
    """What a forked child wrote to ``fd`` before it exited, or ``b""`` if it did not finish within
    ``budget`` seconds (it is then killed)."""
    out, deadline = b"", time.monotonic() + budget
    try:
        while True:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([fd], [], [], left)[0]:
                os.kill(pid, 9)
                return b""
            chunk = os.read(fd, 65536)
            if not chunk:
                return out
            out += chunk
    finally:
        os.close(fd)
        os.waitpid(pid, 0)


BODY, LOCK_TIMEOUT = 1.0, 3.0


@pytest.mark.skipif(not hasattr(os, "fork"), reason="os.fork")
@pytest.mark.parametrize("backend", ["memory", "memcached", "redis"])
def test_a_child_forked_during_a_computation_does_not_wait_for_it(
    backend: str, region_config: Callable[..., Any], make_manager: Callable[..., Any]
) -> None:
    """A parent thread is computing ``f(1)`` (a 1 s body, ``lock_timeout`` 3 s) when the process
    forks, as gunicorn ``--preload`` and Celery prefork do. The child invalidates and calls ``f(1)``
    3 times: each call computes at once (about 1 s). The parent's computation is still listed among
    the in-process flights the child inherited, but its thread does not exist there: waiting for it
    cost ``lock_timeout`` + 1 s per call, for every miss of that key, forever.

    Redis locks creation across processes by default (``distributed_lock``): the parent's
    computation, alive in the parent, holds the server's lock, so the child's first call may wait
    for it (at most its body) before computing its own value (its invalidation voided the parent's
    lease); never ``lock_timeout``, and its later calls cost the body only."""
    manager = make_manager({"r": region_config(backend, TIMEOUT=300, OPTIONS={"lock_timeout": LOCK_TIMEOUT})})
    inside = threading.Event()

    @manager.region("r")
    def f(x: int) -> int:
        if threading.current_thread().name == "parent-computation":
            inside.set()
        time.sleep(BODY)
        return x * 10

    computing = threading.Thread(target=f, args=(1,), name="parent-computation")
    computing.start()
    assert inside.wait(10)
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report, and never return into pytest
        code = 1
        try:
            os.close(read_end)
            waits = []
            for _ in range(3):
                f.invalidate(1)  # every call a miss: a new computation of the parent's key
                start = time.monotonic()
                assert f(1) == 10
                waits.append(time.monotonic() - start)
            report = {"waits": waits, "stats": manager["r"].stats()}
            os.write(write_end, json.dumps(report).encode())
            code = 0
        except BaseException as exc:
            os.write(write_end, json.dumps({"error": repr(exc)}).encode())
        finally:
            os._exit(code)
    os.close(write_end)
    raw = read_child(read_end, pid, 60)
    computing.join(10)
    assert raw, "the child did not finish its 3 calls within 60 s"
    report = json.loads(raw)
    assert "error" not in report, report["error"]
    waits = report["waits"]
    print(f"\n{backend}: the child's calls took {[round(w, 2) for w in waits]} s "
          f"(body {BODY} s, lock_timeout {LOCK_TIMEOUT} s); child stats {report['stats']}")
    assert max(waits) < LOCK_TIMEOUT, (
        f"a call in the child took {max(waits):.2f} s: it waited for the parent's computation"
    )
    assert report["stats"]["lock_timeouts"] == 0, report["stats"]
    assert max(waits[1:]) < BODY + 0.5 * (LOCK_TIMEOUT - BODY), f"later calls waited: {waits}"
