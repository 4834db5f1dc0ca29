"""Async Redis hits on the event loop (issue 16, part 3), against real redis-servers and real loops.

What each test guards:

* ``test_async_hit_reads_what_the_sync_path_stored_without_an_io_thread``: an ``async def`` function
  reads the entry a sync function of the same name stored (same key, signed), the region's I/O
  threads get no work for it (every submit is counted), and the server saw one read per hit.
* ``test_a_paused_server_costs_one_timeout_then_the_breaker_is_open``: SIGSTOP: one call waits one
  ``socket_timeout`` and marks the server down for sync callers too (one breaker); every call
  returns the computed value, none raises, one log line; after SIGCONT hits resume on the loop.
* ``test_a_stopped_server_times_out_a_new_connection_s_handshake``: SIGSTOP before the loop's first
  connection: the kernel accepts it, the handshake is timed out, the call computes its value.
* ``test_a_killed_and_restarted_server``: SIGKILL, then an empty server on the same port: calls
  compute meanwhile, then the value is stored again and hit on new connections.
* ``test_two_loops_in_two_threads_have_connections_of_their_own``: two loops running at once in two
  threads, each reading through a pool of its own.
* ``test_a_forked_child_reads_on_connections_of_its_own``: a child forked after the parent's loop
  made connections reads correct values on new ones.
* ``test_a_planted_entry_is_rejected_on_the_loop``: unsigned bytes under the key are never
  unpickled: a miss counted as rejected, recomputed and rewritten.
* ``test_tagged_async_hit_on_the_loop_and_a_bump_makes_it_miss``: the tagged hit (entry and tag
  counters in one round trip) on the loop, and a bump makes it a miss at once.
* ``test_a_cancelled_read_never_leaves_its_reply_to_the_next``: a caller cancelled while its
  request is unanswered closes that connection; the next read gets its own reply.
* ``test_a_busy_loop_pool_is_pool_exhausted_not_a_server_failure``: every connection of the loop
  busy for ``connect_timeout``: the call computes, the breaker stays closed.
* ``test_a_cluster_region_s_async_hits_take_the_io_threads``: a Redis Cluster region (one node)
  keeps the thread hop for coroutines: values, tagged hits and a bump are right.
* ``test_a_hit_over_tls_on_the_loop``: a ``rediss://`` region's hit on the loop (redis-py's TLS
  connection, the same CA option); a client that does not trust the CA gets a miss, no exception.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import os
import pickle
import signal
import threading
import time
from typing import Any

import pytest
import redis

from regions.backends.redis import RedisStore

PAYLOAD = {"rows": [{"id": i, "name": f"item {i}", "price": i * 1.25} for i in range(16)], "text": "é"}
FAST = {"socket_timeout": 0.3, "connect_timeout": 0.3, "retry_interval": 0.1}


class CountingExecutor(concurrent.futures.ThreadPoolExecutor):
    """The region's own I/O thread pool, counting what it is given."""

    def __init__(self) -> None:
        super().__init__(4, thread_name_prefix="counted-io")
        self.submits = 0

    def submit(self, *args: Any, **kwargs: Any) -> Any:  # type: ignore[override]
        self.submits += 1
        return super().submit(*args, **kwargs)


def counted(store: RedisStore) -> CountingExecutor:
    executor = CountingExecutor()
    store._executor = executor  # noqa: SLF001 - the store's executor, made lazily; counted from now on
    return executor


def run(coro: Any, timeout: float = 60.0) -> Any:
    return asyncio.run(asyncio.wait_for(coro, timeout))


def wait_until(predicate: Any, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.02)


def region(make_manager: Any, url: str, **options: Any) -> Any:
    return make_manager({"r": {"BACKEND": "redis", "LOCATION": url, "TIMEOUT": 600, "OPTIONS": options}})


def settle(url: str) -> None:
    """Wait until no lock is held on the server: a miss releases its lock on an I/O thread after
    returning, and a release that met the fault would count as one more failure."""
    admin = redis.Redis.from_url(url)
    wait_until(lambda: not any(admin.scan_iter(match="~lock:*")))
    admin.close()


def server_counts(client: redis.Redis) -> tuple[int, dict[str, int]]:
    """(read events the server processed, calls per command) so far."""
    reads = int(client.info("stats")["total_reads_processed"])
    stats = client.info("commandstats")
    calls = {name.removeprefix("cmdstat_"): int(v["calls"]) for name, v in stats.items()}
    return reads, calls


def test_async_hit_reads_what_the_sync_path_stored_without_an_io_thread(make_manager: Any,
                                                                          redis_factory: Any) -> None:
    server = redis_factory()
    manager = region(make_manager, server.url)

    @manager.region("r")
    def value(x: int) -> dict[str, Any]:
        return {"x": x, **PAYLOAD}

    stored = {x: value(x) for x in range(5)}
    stored_by_sync = value

    @manager.region("r")  # type: ignore[no-redef]
    async def value(x: int) -> dict[str, Any]:  # same qualname, same namespace: reads what sync stored
        raise AssertionError(f"computed {x}: the async read missed what the sync path stored")

    assert stored_by_sync.__qualname__ == value.__qualname__
    reg = manager["r"]
    reg.reset_stats()
    executor = counted(reg.store)

    async def main() -> list[Any]:
        return [await value(x) for x in range(5) for _ in range(20)]

    admin = redis.Redis.from_url(server.url)
    reads, calls = server_counts(admin)
    got = run(main())
    reads_after, calls_after = server_counts(admin)
    reads = reads_after - reads - 2  # (the two INFO of the count)
    calls = {k: v - calls.get(k, 0) for k, v in calls_after.items() if v != calls.get(k, 0)}
    calls.pop("info", None)
    assert got == [stored[x] for x in range(5) for _ in range(20)]
    assert executor.submits == 0, f"the I/O threads got {executor.submits} calls for hits"
    st = reg.stats()
    assert (st["hits"], st["misses"], st["errors"], st["rejected"]) == (100, 0, 0, 0), st
    # one read event per hit (GET and PTTL in one send; sent apart they would make 200), besides a
    # few of the new connection's (its handshake, some refused by older servers, and its close)
    assert calls["get"] == calls["pttl"] == 100, calls
    assert 100 <= reads <= 110, f"{reads} read events for 100 hits and {calls}"


def test_a_paused_server_costs_one_timeout_then_the_breaker_is_open(
    make_manager: Any, redis_factory: Any, caplog: pytest.LogCaptureFixture
) -> None:
    server = redis_factory()
    manager = region(make_manager, server.url, **FAST)
    computed: list[int] = []

    @manager.region("r")
    async def answer(x: int) -> tuple[str, int]:
        computed.append(x)
        return ("v", x)

    reg = manager["r"]
    store: RedisStore = reg.store
    loop = asyncio.new_event_loop()  # one loop throughout: the request times out on its connection
    assert loop.run_until_complete(answer(1)) == ("v", 1)
    assert loop.run_until_complete(answer(1)) == ("v", 1) and computed == [1]
    settle(server.url)
    reg.reset_stats()
    caplog.set_level(logging.WARNING, logger="regions")
    caplog.clear()
    os.kill(server.proc.pid, signal.SIGSTOP)
    try:
        async def during() -> list[Any]:
            return [await answer(1) for _ in range(10)]

        assert loop.run_until_complete(asyncio.wait_for(during(), 30)) == [("v", 1)] * 10  # no exception
        st = reg.stats()
        assert st["errors"] == 1, f"one timeout per outage, then the breaker skips the server: {st}"
        assert store.breaker.down
        with pytest.raises(Exception, match="is down"):  # the sync path skips it too: one breaker
            reg.namespace("probe").get_entry("k")
        down = [r for r in caplog.records if "is down" in r.getMessage()]
        assert len(down) == 1 and "did not answer" in down[0].getMessage(), [r.getMessage() for r in down]
    finally:
        os.kill(server.proc.pid, signal.SIGCONT)
    wait_until(lambda: not store.breaker.down)
    computed.clear()
    executor = counted(store)
    try:
        assert loop.run_until_complete(answer(1)) == ("v", 1)
    finally:
        loop.close()
    assert computed == [] and executor.submits == 0, "after the outage, the hit is served on the loop"


def test_a_stopped_server_times_out_a_new_connection_s_handshake(make_manager: Any,
                                                                 redis_factory: Any) -> None:
    """A stopped server's kernel still accepts connections: the new connection's handshake is
    timed, so the call computes its value and the breaker opens (no wait without end)."""
    server = redis_factory()
    manager = region(make_manager, server.url, **FAST)

    @manager.region("r")
    async def answer(x: int) -> tuple[str, int]:
        return ("v", x)

    os.kill(server.proc.pid, signal.SIGSTOP)
    try:
        assert run(answer(1), timeout=20) == ("v", 1)  # (the miss's own calls meet the open breaker)
        store: RedisStore = manager["r"].store
        assert store.breaker.down
        pools = list(store.loop_connections._pools.values())  # noqa: SLF001
        assert len(pools) == 1 and pools[0].made == 0, "the read did not try a connection of the loop's"
        assert manager["r"].stats()["errors"] == 1
        cause = store.breaker.cause or ""  # asyncio.timeout's own TimeoutError says nothing
        assert "no connection made and greeted within" in cause, cause
    finally:
        os.kill(server.proc.pid, signal.SIGCONT)


def test_a_killed_and_restarted_server(make_manager: Any, redis_factory: Any) -> None:
    server = redis_factory()
    manager = region(make_manager, server.url, **FAST)
    computed: list[int] = []

    @manager.region("r")
    async def answer(x: int) -> tuple[str, int]:
        computed.append(x)
        return ("v", x)

    store: RedisStore = manager["r"].store

    async def calls(n: int) -> list[Any]:
        return [await answer(1) for _ in range(n)]

    loop = asyncio.new_event_loop()  # one loop throughout: its idle connections outlive the server
    try:
        assert loop.run_until_complete(calls(3)) == [("v", 1)] * 3 and computed == [1]
        settle(server.url)
        manager["r"].reset_stats()
        server.proc.send_signal(signal.SIGKILL)
        server.proc.wait(5)
        assert loop.run_until_complete(calls(5)) == [("v", 1)] * 5  # no exception while it is gone
        assert store.breaker.down
        redis_factory(port=server.port)
        wait_until(lambda: not store.breaker.down)
        computed.clear()
        assert loop.run_until_complete(calls(3)) == [("v", 1)] * 3
        assert computed == [1], "the restarted server was empty: computed once, stored, then hit"
        executor = counted(store)
        assert loop.run_until_complete(calls(3)) == [("v", 1)] * 3
        assert computed == [1] and executor.submits == 0
        assert manager["r"].stats()["errors"] == 1, "one failure for the outage"
    finally:
        loop.close()


def test_two_loops_in_two_threads_have_connections_of_their_own(make_manager: Any, redis_server: str) -> None:
    manager = region(make_manager, redis_server)

    @manager.region("r")
    async def square(x: int) -> dict[str, int]:
        return {"x": x, "square": x * x}

    async def store_all() -> None:
        await asyncio.gather(*(square(x) for x in range(20)))

    run(store_all())
    store: RedisStore = manager["r"].store
    executor = counted(store)
    both = threading.Barrier(2, timeout=30)
    seen: dict[int, Any] = {}
    errors: list[BaseException] = []

    async def reader(i: int) -> None:
        for round_ in range(30):
            got = await asyncio.gather(*(square(x) for x in range(20)))
            assert got == [{"x": x, "square": x * x} for x in range(20)]
            if round_ == 0:
                await asyncio.to_thread(both.wait)  # both loops are running from here on
        loop = asyncio.get_running_loop()
        pool = store.loop_connections._pools[loop]  # noqa: SLF001
        assert pool.idle and pool.loop is loop
        seen[i] = (pool, {id(conn) for conn, _ in pool.idle})
        await asyncio.to_thread(both.wait)  # both pools exist at once

    def thread(i: int) -> None:
        try:
            run(reader(i))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=thread, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors
    assert seen[0][0] is not seen[1][0] and not seen[0][1] & seen[1][1]
    assert executor.submits == 0, "a hit used an I/O thread"
    assert manager["r"].stats()["errors"] == 0


@pytest.mark.skipif(not hasattr(os, "fork"), reason="fork only")
def test_a_forked_child_reads_on_connections_of_its_own(make_manager: Any, redis_server: str) -> None:
    manager = region(make_manager, redis_server)

    @manager.region("r")
    async def answer(x: int) -> tuple[str, int, int]:
        return ("v", x, os.getpid())

    async def all_ten() -> list[Any]:
        return list(await asyncio.gather(*(answer(x) for x in range(10))))

    loop = asyncio.new_event_loop()  # kept open: the parent's connections stay alive in the child
    try:
        stored = loop.run_until_complete(all_ten())
        store: RedisStore = manager["r"].store
        parent_conns = store.loop_connections
        assert parent_conns.loops() == 1
        read, write = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child: report, never return into pytest
            code = 1
            try:
                os.close(read)

                async def child() -> list[Any]:
                    return [await answer(x) for x in range(10)]

                got = asyncio.run(child())
                report = {"same": got == stored, "new": store.loop_connections is not parent_conns,
                          "hits": manager["r"].stats()["hits"]}
                os.write(write, pickle.dumps(report))
                code = 0
            finally:
                os._exit(code)
        os.close(write)
        with os.fdopen(read, "rb") as pipe:
            data = pipe.read()
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0, "the child failed"
        report = pickle.loads(data)
        assert report["same"], "the child read other values than the parent stored"
        assert report["new"], "the child used its parent's connections"
        # the parent's own connections still answer in step
        assert loop.run_until_complete(all_ten()) == stored
    finally:
        loop.close()


def test_a_planted_entry_is_rejected_on_the_loop(make_manager: Any, redis_server: str,
                                                 caplog: pytest.LogCaptureFixture) -> None:
    manager = region(make_manager, redis_server)
    computed: list[int] = []

    @manager.region("r")
    async def answer(x: int) -> tuple[str, int]:
        computed.append(x)
        return ("v", x)

    assert run(answer(1)) == ("v", 1)
    wire = answer.cache_key(1)
    client = redis.Redis.from_url(redis_server)
    client.set(wire, pickle.dumps((time.time(), None, "planted")))  # unsigned: never unpickled
    caplog.set_level(logging.WARNING, logger="regions")
    caplog.clear()
    executor = counted(manager["r"].store)
    assert run(answer(1)) == ("v", 1) and computed == [1, 1]
    # rejected by the hit on the loop, and again by the miss's re-read under the lock (I/O threads)
    assert manager["r"].stats()["rejected"] in (1, 2)
    assert len([r for r in caplog.records if "rejected" in r.getMessage()]) == 1  # logged once
    submits = executor.submits  # the miss's lease and store ran on the I/O threads
    assert run(answer(1)) == ("v", 1) and computed == [1, 1], "the rewritten entry is a hit again"
    assert executor.submits == submits, "the hit used an I/O thread"


def test_tagged_async_hit_on_the_loop_and_a_bump_makes_it_miss(make_manager: Any, redis_server: str) -> None:
    manager = region(make_manager, redis_server)
    computed: list[int] = []

    @manager.region("r", tags=lambda post_id: [f"post:{post_id}", "posts"])
    def post(post_id: int) -> dict[str, int]:
        computed.append(post_id)
        return {"id": post_id, "n": len(computed)}

    stored = {x: post(x) for x in range(3)}
    stored_by_sync = post

    @manager.region("r", tags=lambda post_id: [f"post:{post_id}", "posts"])  # type: ignore[no-redef]
    async def post(post_id: int) -> dict[str, int]:
        computed.append(post_id)
        return {"id": post_id, "n": len(computed)}

    assert stored_by_sync.__qualname__ == post.__qualname__
    executor = counted(manager["r"].store)

    async def reads() -> list[Any]:
        return [await post(x) for x in range(3) for _ in range(5)]

    assert run(reads()) == [stored[x] for x in range(3) for _ in range(5)]
    assert computed == [0, 1, 2] and executor.submits == 0, "a tagged hit used an I/O thread"
    assert manager.invalidate_tags("post:1") is True
    fresh = run(post(1))
    assert fresh == {"id": 1, "n": 4} and computed == [0, 1, 2, 1], "the bumped tag's entry was served"
    assert run(post(0)) == stored[0]  # the other entries keep their versions
    submits = executor.submits
    assert run(post(1)) == fresh and computed == [0, 1, 2, 1]
    assert executor.submits == submits


def test_a_cancelled_read_never_leaves_its_reply_to_the_next(make_manager: Any, redis_factory: Any) -> None:
    server = redis_factory()
    manager = region(make_manager, server.url, socket_timeout=5)

    @manager.region("r")
    async def answer(x: int) -> tuple[str, int]:
        return ("v", x)

    store: RedisStore = manager["r"].store

    async def main() -> list[Any]:
        await asyncio.gather(answer(1), answer(2))  # stored
        pool = store.loop_connections.pool()
        before = len(pool.idle)
        assert before >= 1 and pool.made == before
        os.kill(server.proc.pid, signal.SIGSTOP)
        try:
            task = asyncio.create_task(answer(1))
            give_up = time.monotonic() + 10
            while not pool.deadlines and time.monotonic() < give_up:  # until its GET + PTTL is sent
                await asyncio.sleep(0.001)
            assert pool.deadlines, "the call sent no request within 10 s"
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
        finally:
            os.kill(server.proc.pid, signal.SIGCONT)
        assert len(pool.idle) == pool.made == before - 1, "the cancelled read's connection was kept"
        assert all(conn.is_connected for conn, _ in pool.idle)
        return [await answer(2) for _ in range(3)]

    assert run(main()) == [("v", 2)] * 3
    assert not store.breaker.down, "a cancelled caller is no failure of the server"


def test_a_busy_loop_pool_is_pool_exhausted_not_a_server_failure(make_manager: Any, redis_factory: Any,
                                                                  caplog: pytest.LogCaptureFixture) -> None:
    server = redis_factory()
    manager = region(make_manager, server.url, max_connections=1, socket_timeout=5, connect_timeout=0.2)

    @manager.region("r")
    async def answer(x: int) -> tuple[str, int]:
        return ("v", x)

    store: RedisStore = manager["r"].store

    async def main() -> Any:
        await answer(1)  # stored; the loop's one connection is idle
        pool = store.loop_connections.pool()
        os.kill(server.proc.pid, signal.SIGSTOP)
        try:
            held = asyncio.create_task(answer(1))  # takes the one connection, unanswered
            # until its request is in flight (not a fixed 0.05 s: on a busy CPU the next call could
            # take the connection first, wait 5 s on the stopped server and trip the breaker)
            give_up = time.monotonic() + 10
            while not pool.deadlines and time.monotonic() < give_up:
                await asyncio.sleep(0.001)
            assert pool.deadlines, "the first call sent no request within 10 s"
            # The server resumes 2 s on at the latest, well inside the held request's 5 s: the
            # second call's miss goes on to its lease and store on the I/O threads, which can meet
            # the stopped server too (seen once in a full run), and must not outlast the held one.
            resume = asyncio.get_running_loop().call_later(2.0, os.kill, server.proc.pid, signal.SIGCONT)
            second = await answer(1)  # waits connect_timeout for a connection, then computes
            resume.cancel()
        finally:
            os.kill(server.proc.pid, signal.SIGCONT)
        return second, await held

    caplog.set_level(logging.WARNING, logger="regions")
    assert run(main()) == (("v", 1), ("v", 1))
    assert not store.breaker.down, "a busy pool is no failure of the server"
    assert store.loop_connections._pools and all(  # noqa: SLF001 - the loop's pool was the busy one
        pool.made == 1 for pool in store.loop_connections._pools.values())  # noqa: SLF001
    messages = [r.getMessage() for r in caplog.records]
    assert any("stayed busy" in m for m in messages), messages


def test_a_hit_over_tls_on_the_loop(make_manager: Any, redis_factory: Any, tmp_path: Any) -> None:
    import subprocess

    from tests.conftest import free_port
    from tests.test_redis import _certificates

    if subprocess.run(["which", "openssl"], capture_output=True).returncode != 0:
        pytest.skip("the openssl command makes the test's certificates: apt-get install -y openssl")
    certs = _certificates(tmp_path)
    tls_port = free_port()
    redis_factory(extra_args=("--tls-port", str(tls_port), "--tls-cert-file", certs["server"],
                              "--tls-key-file", certs["key"], "--tls-ca-cert-file", certs["ca"],
                              "--tls-auth-clients", "no"))
    url = f"rediss://127.0.0.1:{tls_port}/0"
    manager = region(make_manager, url, ssl_ca_certs=certs["ca"])
    computed: list[int] = []

    @manager.region("r")
    async def f(x: int) -> int:
        computed.append(x)
        return x

    store: RedisStore = manager["r"].store

    async def calls() -> list[int]:
        return [await f(1) for _ in range(3)]

    assert run(calls()) == [1, 1, 1] and computed == [1]
    executor = counted(store)
    assert run(calls()) == [1, 1, 1] and computed == [1] and executor.submits == 0
    assert manager["r"].stats()["errors"] == 0
    untrusting = region(make_manager, url, ssl_ca_certs=certs["server"])

    @untrusting.region("r")
    async def g(x: int) -> int:
        return x + 1

    untrusted: RedisStore = untrusting["r"].store
    assert run(g(1)) == 2  # the handshake fails on the loop: a miss, never an exception
    assert untrusting["r"].stats()["hits"] == 0 and untrusted.breaker.down


def test_a_cluster_region_s_async_hits_take_the_io_threads(make_manager: Any, redis_factory: Any,
                                                            tmp_path: Any) -> None:
    import subprocess

    from tests.conftest import free_port

    nodes = tmp_path / "nodes.conf"
    server = redis_factory(extra_args=("--cluster-enabled", "yes", "--cluster-config-file", str(nodes),
                                       "--cluster-port", str(free_port())))
    subprocess.run(["redis-cli", "-p", str(server.port), "cluster", "addslotsrange", "0", "16383"],
                   check=True, capture_output=True)
    admin = redis.Redis.from_url(server.url)
    wait_until(lambda: admin.cluster("INFO").get("cluster_state") == "ok")
    manager = region(make_manager, server.url, cluster=True)
    computed: list[int] = []

    @manager.region("r", tags=lambda x: [f"item:{x}"])
    async def f(x: int) -> dict[str, int]:
        computed.append(x)
        return {"x": x, "n": len(computed)}

    store: RedisStore = manager["r"].store
    assert not store.reads_on_loop

    async def reads() -> list[Any]:
        return [await f(x) for x in (1, 2) for _ in range(3)]

    first = run(reads())
    assert first == [{"x": 1, "n": 1}] * 3 + [{"x": 2, "n": 2}] * 3 and computed == [1, 2]
    executor = counted(store)
    assert run(reads()) == first and computed == [1, 2]
    assert executor.submits == 6, "a cluster's hits run on the I/O threads"
    assert manager.invalidate_tags("item:1") is True
    assert run(f(1)) == {"x": 1, "n": 3} and run(f(2)) == {"x": 2, "n": 2}
    assert manager["r"].stats()["errors"] == 0
