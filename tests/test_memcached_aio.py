"""Async memcached hits on the event loop (issue 16, part 3), against real memcached servers.

What each test guards:

* ``test_async_hit_reads_what_the_sync_path_stored_without_an_io_thread``: an ``async def`` function
  reads the entry a sync function of the same name stored (same namespace, same key, signed), and
  the region's I/O threads get no work for it (every submit to the executor is counted).
* ``test_a_value_in_parts_is_read_on_the_io_threads``: a value larger than one item (a head and
  its parts) comes back whole; its parts are the only work the I/O threads get.
* ``test_a_paused_server_costs_one_timeout_then_the_breaker_is_open``: SIGSTOP: one call waits
  one ``timeout`` and marks the server down (for sync callers too: same breaker); every call
  returns the computed value, none raises; after SIGCONT the probe brings the server back and
  hits resume on the loop.
* ``test_a_killed_and_restarted_server``: SIGKILL, then a restart on the same port (empty): calls
  compute meanwhile, then the value is stored again and hit on new connections.
* ``test_two_loops_in_two_threads_have_connections_of_their_own``: two event loops running at
  once, in two threads, each read through a pool of its own whose transports belong to it.
* ``test_a_forked_child_reads_on_connections_of_its_own``: a child forked after the parent's loop
  made connections reads correct values on new ones (new nodes, no parent transport).
* ``test_keys_go_to_the_same_server_as_the_sync_path``: two servers; every key the sync path stored
  is read by the async path from the server that holds it (memcached's own ``get_hits`` per server).
* ``test_a_garbage_reply_is_a_miss_logged_once``: a stand-in server answers ``mg`` with garbage:
  the call computes its value, the connection is closed, the server marked down, one log line.
* ``test_a_planted_entry_is_rejected_on_the_loop``: unsigned bytes under the key are never unpickled:
  a miss, counted as rejected, recomputed and rewritten.
* ``test_a_cancelled_read_never_leaves_its_reply_to_the_next``: a caller cancelled while its ``mg``
  is in flight closes that connection; the next read gets its own reply.
* ``test_tagged_async_hit_on_the_loop_and_a_bump_makes_it_miss``: the tagged hit (entry and tag
  counters, one round trip) on the loop too, and a tag bump makes it a miss at once.
* ``test_a_reply_resumes_its_own_task_in_its_own_context``: the reply wakes the task that sent its
  request at once, from the reader (:class:`~regions.backends.memcached.aio.Reply`, no
  ``call_soon``): each of several tasks reading at once comes back as itself, with its own context
  variables, its own reply, and no I/O thread.
* ``test_a_large_single_item_arrives_in_many_chunks``: a 700 KB item read on the loop, whole.
* ``test_every_prefix_of_a_reply_is_incomplete_and_the_whole_reply_parses``: the parsers the
  blocking socket and the protocol share never read a partial reply as a value or an error.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import logging
import os
import pickle
import socket
import threading
import time

import pytest
from pymemcache.client.base import Client

from regions.backends.memcached import MemcachedStore
from tests.conftest import made_for_the_test
from tests.faults.conftest import FaultyMemcached

PAYLOAD = {"rows": [{"id": i, "name": f"item {i}", "price": i * 1.25} for i in range(16)], "text": "é"}


class CountingExecutor(concurrent.futures.ThreadPoolExecutor):
    """The region's own I/O thread pool, counting what it is given."""

    def __init__(self) -> None:
        super().__init__(4, thread_name_prefix="counted-io")
        self.submits = 0

    def submit(self, *args, **kwargs):  # type: ignore[override]
        self.submits += 1
        return super().submit(*args, **kwargs)


def counted(store: MemcachedStore) -> CountingExecutor:
    executor = CountingExecutor()
    store._executor = executor  # noqa: SLF001 - the store's executor, made lazily; counted from now on
    return executor


def run(coro, timeout: float = 60.0):
    return asyncio.run(asyncio.wait_for(coro, timeout))


async def each(func, args):
    """``func(x)`` for every ``x`` at once (gathered on the running loop)."""
    return await asyncio.gather(*(func(x) for x in args))


def wait_until(predicate, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.01)


@pytest.fixture
def faulty():
    yield from made_for_the_test(FaultyMemcached, FaultyMemcached.stop)


def options(**extra):
    return {"sync_interval": 600, **extra}  # counters read once: no re-read inside a test's reads


def test_async_hit_reads_what_the_sync_path_stored_without_an_io_thread(make_manager, memcached_server):
    manager = make_manager({"r": {"BACKEND": "memcached", "LOCATION": memcached_server, "TIMEOUT": 600,
                                  "OPTIONS": options()}})

    @manager.region("r")
    def value(x):
        return {"x": x, **PAYLOAD}

    stored = {x: value(x) for x in range(5)}
    stored_by_sync = value

    @manager.region("r")
    async def value(x):  # same qualname, same namespace: reads what the sync function stored
        raise AssertionError(f"computed {x}: the async read missed what the sync path stored")

    assert stored_by_sync.__qualname__ == value.__qualname__
    region = manager["r"]
    region.reset_stats()
    executor = counted(region.store)

    async def main():
        return [await value(x) for x in range(5) for _ in range(20)]

    got = run(main())
    assert got == [stored[x] for x in range(5) for _ in range(20)]
    assert executor.submits == 0, f"the I/O threads got {executor.submits} calls for hits"
    st = region.stats()
    assert (st["hits"], st["misses"], st["errors"], st["rejected"]) == (100, 0, 0, 0), st


def test_a_value_in_parts_is_read_on_the_io_threads(make_manager, memcached_server):
    manager = make_manager({"r": {"BACKEND": "memcached", "LOCATION": memcached_server, "TIMEOUT": 600,
                                  "OPTIONS": options(item_size=1024)}})
    big = os.urandom(20_000)

    @manager.region("r")
    def blob(x):
        return big

    assert blob(1) == big
    stored_by_sync = blob

    @manager.region("r")
    async def blob(x):
        raise AssertionError("computed: the async read missed the value in parts")

    assert stored_by_sync.__qualname__ == blob.__qualname__
    executor = counted(manager["r"].store)
    assert run(blob(1)) == big
    assert executor.submits == 1, "the parts are read on an I/O thread, the head on the loop"


def test_a_paused_server_costs_one_timeout_then_the_breaker_is_open(make_manager, faulty, caplog):
    server = faulty()
    manager = make_manager({"r": {"BACKEND": "memcached", "LOCATION": server.address, "TIMEOUT": 600,
                                  "OPTIONS": options(timeout=0.3, connect_timeout=0.3, retry_interval=0.2)}})
    computed: list[int] = []

    @manager.region("r")
    async def answer(x):
        computed.append(x)
        return ("v", x)

    region = manager["r"]
    store: MemcachedStore = region.store
    breaker = store.nodes.all[0].breaker
    assert run(answer(1)) == ("v", 1)
    assert run(answer(1)) == ("v", 1) and computed == [1]
    region.reset_stats()
    caplog.set_level(logging.WARNING, logger="regions")
    caplog.clear()
    server.pause()
    try:
        async def during():
            return [await answer(1) for _ in range(10)]

        assert run(during()) == [("v", 1)] * 10  # computed: no exception, no stale value
        st = region.stats()
        assert st["errors"] == 1, f"one timeout per outage, then the breaker skips the server: {st}"
        assert st["unavailable"] >= 9, st
        assert breaker.down
        ns = region.namespace("probe")
        with pytest.raises(Exception, match="is down"):  # the sync path skips it too: one breaker
            ns.get_entry("k")
        down = [r for r in caplog.records if "is down" in r.getMessage()]
        assert len(down) == 1 and "TimeoutError" in down[0].getMessage(), [r.getMessage() for r in down]
    finally:
        server.resume()
    wait_until(lambda: not breaker.down)
    computed.clear()
    executor = counted(store)
    assert run(answer(1)) == ("v", 1)
    assert computed == [] and executor.submits == 0, "after the outage, the hit is served on the loop"


def test_a_killed_and_restarted_server(make_manager, faulty):
    server = faulty()
    manager = make_manager({"r": {"BACKEND": "memcached", "LOCATION": server.address, "TIMEOUT": 600,
                                  "OPTIONS": options(timeout=0.5, connect_timeout=0.5, retry_interval=0.2)}})
    computed: list[int] = []

    @manager.region("r")
    async def answer(x):
        computed.append(x)
        return ("v", x)

    store: MemcachedStore = manager["r"].store
    breaker = store.nodes.all[0].breaker

    async def calls(n):
        return [await answer(1) for _ in range(n)]

    assert run(calls(3)) == [("v", 1)] * 3 and computed == [1]
    server.kill()
    assert run(calls(5)) == [("v", 1)] * 5  # no exception: computed while the server is gone
    assert breaker.down
    server.start()
    wait_until(lambda: not breaker.down)
    computed.clear()
    assert run(calls(3)) == [("v", 1)] * 3
    assert computed == [1], "the restarted server was empty: computed once, stored, then hit"
    executor = counted(store)
    assert run(calls(3)) == [("v", 1)] * 3 and computed == [1] and executor.submits == 0


def test_two_loops_in_two_threads_have_connections_of_their_own(make_manager, memcached_server):
    manager = make_manager({"r": {"BACKEND": "memcached", "LOCATION": memcached_server, "TIMEOUT": 600,
                                  "OPTIONS": options()}})

    @manager.region("r")
    async def square(x):
        return {"x": x, "square": x * x}

    run(each(square, range(20)))  # stored
    node = manager["r"].store.nodes.all[0]
    executor = counted(manager["r"].store)
    both = threading.Barrier(2, timeout=30)
    seen: dict[int, object] = {}
    errors: list[BaseException] = []

    async def reader(i):
        for round_ in range(50):
            got = await asyncio.gather(*(square(x) for x in range(20)))
            assert got == [{"x": x, "square": x * x} for x in range(20)]
            if round_ == 0:
                await asyncio.to_thread(both.wait)  # both loops are running from here on
        loop = asyncio.get_running_loop()
        pool = node.aio._pools[loop]  # noqa: SLF001
        assert pool.idle and all(conn.loop is loop for conn in pool.idle)
        seen[i] = pool
        await asyncio.to_thread(both.wait)  # both pools exist at once

    def thread(i):
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
    assert seen[0] is not seen[1]
    assert executor.submits == 0, "a hit used an I/O thread"
    assert manager["r"].stats()["errors"] == 0


@pytest.mark.skipif(not hasattr(os, "fork"), reason="fork only")
def test_a_forked_child_reads_on_connections_of_its_own(make_manager, memcached_server):
    manager = make_manager({"r": {"BACKEND": "memcached", "LOCATION": memcached_server, "TIMEOUT": 600,
                                  "OPTIONS": options()}})

    @manager.region("r")
    async def answer(x):
        return ("v", x, os.getpid())

    parent = os.getpid()

    async def warm():
        values = [await answer(x) for x in range(10)]
        return values, asyncio.get_running_loop()

    stored, loop = run(warm())
    store: MemcachedStore = manager["r"].store
    parent_node = store.nodes.all[0]
    assert loop in parent_node.aio._pools  # noqa: SLF001 - the parent's connections exist
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report, never return into pytest
        code = 1
        try:
            os.close(read)
            node = store.nodes.all[0]

            async def child():
                return [await answer(x) for x in range(10)]

            got = asyncio.run(child())
            report = {"same": got == stored, "new_node": node is not parent_node,
                      "parent_pools": len(parent_node.aio._pools), "child_loops": node.aio.loops()}  # noqa: SLF001
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
    assert report["new_node"], "the child used its parent's node (and its transports)"
    assert all(v[2] == parent for v in stored)
    assert run(warm())[0] == stored  # the parent still reads on its own connections


def test_keys_go_to_the_same_server_as_the_sync_path(make_manager, memcached_factory):
    servers = [memcached_factory(), memcached_factory()]
    manager = make_manager({"r": {"BACKEND": "memcached", "LOCATION": [s.address for s in servers],
                                  "TIMEOUT": 600, "OPTIONS": options()}})

    @manager.region("r")
    def item(x):
        return ("item", x)

    keys = range(40)
    for x in keys:
        item(x)
    stored_by_sync = item
    store: MemcachedStore = manager["r"].store
    clients = {s.address: Client(("127.0.0.1", s.port)) for s in servers}
    expected = dict.fromkeys(clients, 0)
    for x in keys:
        wire = stored_by_sync.cache_key(x)
        label = store.node_for(wire).label
        holders = [address for address, c in clients.items() if c.get(wire) is not None]
        assert holders == [label], f"key {x}: the sync path stored it on {holders}, maps it to {label}"
        expected[label] += 1
    assert all(expected.values()), f"one server got every key: {expected}"

    @manager.region("r")
    async def item(x):
        raise AssertionError(f"computed {x}: the async path looked on another server")

    def hits():
        return {a: int(c.stats()[b"get_hits"]) for a, c in clients.items()}

    before = hits()
    run(each(item, keys))
    after = hits()
    assert {a: after[a] - before[a] for a in clients} == expected
    for c in clients.values():
        c.close()


class GarbageServer:
    """A stand-in memcached: counters and stores answered as memcached would (nothing is kept),
    every meta get answered with a line that is no reply at all."""

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.address = f"127.0.0.1:{self.listener.getsockname()[1]}"
        self.meta_gets = 0
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        buf = b""
        with conn:
            while True:
                try:
                    data = conn.recv(65536)
                except OSError:
                    return
                if not data:
                    return
                buf += data
                while b"\r\n" in buf:
                    line, buf = buf.split(b"\r\n", 1)
                    words = line.split()
                    if not words:
                        continue
                    if words[0] in (b"set", b"add", b"cas"):
                        size = int(words[4])
                        while len(buf) < size + 2:
                            buf += conn.recv(65536)
                        buf = buf[size + 2 :]
                        reply = b"STORED\r\n"
                    elif words[0] in (b"get", b"gets"):
                        reply = b"END\r\n"
                    elif words[0] == b"mg":
                        self.meta_gets += 1
                        reply = b"HELLO THERE, NOT A REPLY\r\n"
                    elif words[0] == b"version":
                        reply = b"VERSION 1.6.0\r\n"
                    else:
                        reply = b"NOT_FOUND\r\n"
                    conn.sendall(reply)

    def close(self) -> None:
        self.listener.close()


def test_a_garbage_reply_is_a_miss_logged_once(make_manager, caplog):
    server = GarbageServer()
    try:
        manager = make_manager({"r": {"BACKEND": "memcached", "LOCATION": server.address, "TIMEOUT": 600,
                                      "OPTIONS": options(retry_interval=60)}})
        computed: list[int] = []

        @manager.region("r")
        async def answer(x):
            computed.append(x)
            return ("v", x)

        caplog.set_level(logging.WARNING, logger="regions")
        caplog.clear()

        async def calls():
            return [await answer(1) for _ in range(5)]

        assert run(calls()) == [("v", 1)] * 5
        assert computed == [1] * 5
        assert server.meta_gets == 1, "the server is skipped after its garbage reply"
        lines = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
        assert len(lines) == 1 and "is down" in lines[0], lines
        st = manager["r"].stats()
        assert (st["hits"], st["errors"]) == (0, 1) and st["unavailable"] >= 4, st
    finally:
        server.close()


def test_a_planted_entry_is_rejected_on_the_loop(make_manager, memcached_server, caplog):
    manager = make_manager({"r": {"BACKEND": "memcached", "LOCATION": memcached_server, "TIMEOUT": 600,
                                  "OPTIONS": options()}})
    computed: list[int] = []

    @manager.region("r")
    async def answer(x):
        computed.append(x)
        return ("v", x)

    assert run(answer(1)) == ("v", 1)
    wire = answer.cache_key(1)
    host, port = memcached_server.rsplit(":", 1)
    client = Client((host, int(port)))
    client.set(wire, pickle.dumps((time.time(), None, "planted")), noreply=False)  # unsigned: never unpickled
    caplog.set_level(logging.WARNING, logger="regions")
    caplog.clear()
    assert run(answer(1)) == ("v", 1) and computed == [1, 1]
    assert manager["r"].stats()["rejected"] == 1
    assert len([r for r in caplog.records if "rejected" in r.getMessage()]) == 1
    assert run(answer(1)) == ("v", 1) and computed == [1, 1], "the rewritten entry is a hit again"
    client.close()


def test_a_cancelled_read_never_leaves_its_reply_to_the_next(make_manager, faulty):
    server = faulty()
    manager = make_manager({"r": {"BACKEND": "memcached", "LOCATION": server.address, "TIMEOUT": 600,
                                  "OPTIONS": options(timeout=5)}})

    @manager.region("r")
    async def answer(x):
        return ("v", x)

    node = manager["r"].store.nodes.all[0]

    async def main():
        await asyncio.gather(answer(1), answer(2))  # stored
        pool = node.aio._pools[asyncio.get_running_loop()]  # noqa: SLF001
        server.pause()
        try:
            task = asyncio.create_task(answer(1))
            give_up = time.monotonic() + 10
            while not any(conn.waiting for conn in pool.conns) and time.monotonic() < give_up:
                await asyncio.sleep(0.001)  # until its mg is sent, unanswered (not a fixed 0.1 s)
            assert any(conn.waiting for conn in pool.conns), "the call sent no request within 10 s"
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            # closed and gone from the pool at once, while its server is still stopped
            assert not any(conn.waiting for conn in pool.conns), "the cancelled read is still in flight"
            assert pool.made == len(pool.conns) == len(pool.idle), (pool.made, len(pool.conns))
        finally:
            server.resume()
        assert all(not conn.closed for conn in pool.idle), "the cancelled read's connection was kept"
        return [await answer(2) for _ in range(3)]

    assert run(main()) == [("v", 2)] * 3
    assert not node.breaker.down, "a cancelled caller is no failure of the server"


def test_tagged_async_hit_on_the_loop_and_a_bump_makes_it_miss(make_manager, memcached_server):
    """The tagged hit (entry and tag counters in one round trip) is served on the loop too; a tag
    bump made through the sync path makes it a miss at once."""
    manager = make_manager({"r": {"BACKEND": "memcached", "LOCATION": memcached_server, "TIMEOUT": 600,
                                  "OPTIONS": options()}})
    computed: list[int] = []

    @manager.region("r", tags=lambda post_id: [f"post:{post_id}", "posts"])
    def post(post_id):
        computed.append(post_id)
        return {"id": post_id, "n": len(computed)}

    stored = {x: post(x) for x in range(3)}
    stored_by_sync = post

    @manager.region("r", tags=lambda post_id: [f"post:{post_id}", "posts"])
    async def post(post_id):
        computed.append(post_id)
        return {"id": post_id, "n": len(computed)}

    assert stored_by_sync.__qualname__ == post.__qualname__
    executor = counted(manager["r"].store)

    async def reads():
        return [await post(x) for x in range(3) for _ in range(5)]

    assert run(reads()) == [stored[x] for x in range(3) for _ in range(5)]
    assert computed == [0, 1, 2] and executor.submits == 0, "a tagged hit used an I/O thread"
    assert manager.invalidate_tags("post:1") is True
    fresh = run(post(1))
    assert fresh == {"id": 1, "n": 4} and computed == [0, 1, 2, 1], "the bumped tag's entry was served"
    assert run(post(0)) == stored[0]  # the other entries keep their versions
    assert run(post(1)) == fresh and computed == [0, 1, 2, 1]


def test_a_reply_resumes_its_own_task_in_its_own_context(make_manager, memcached_server):
    manager = make_manager({"r": {"BACKEND": "memcached", "LOCATION": memcached_server, "TIMEOUT": 600,
                                  "OPTIONS": options(max_connections=2)}})
    caller: contextvars.ContextVar[int] = contextvars.ContextVar("caller")

    @manager.region("r")
    async def answer(x):
        return ("v", x)

    async def reader(i: int) -> list[tuple[object, int, bool]]:
        caller.set(i)
        me = asyncio.current_task()
        seen = []
        for _ in range(5):
            value = await answer(i % 3)
            seen.append((value, caller.get(), asyncio.current_task() is me))
        return seen

    async def main():
        await each(answer, range(3))  # stored
        executor = counted(manager["r"].store)
        got = await each(reader, range(6))  # more readers than connections: some wait for one
        return got, executor.submits

    got, submits = run(main())
    assert got == [[(("v", i % 3), i, True)] * 5 for i in range(6)]
    assert submits == 0, "the hits went to the I/O threads"


def test_a_large_single_item_arrives_in_many_chunks(make_manager, memcached_server):
    """A value of one item far larger than a socket read: the protocol joins its chunks once."""
    manager = make_manager({"r": {"BACKEND": "memcached", "LOCATION": memcached_server, "TIMEOUT": 600,
                                  "OPTIONS": options()}})
    big = os.urandom(700_000)

    @manager.region("r")
    def blob(x):
        return big

    assert blob(1) == big
    stored_by_sync = blob

    @manager.region("r")
    async def blob(x):
        raise AssertionError("computed: the async read missed the large item")

    assert stored_by_sync.__qualname__ == blob.__qualname__
    executor = counted(manager["r"].store)

    async def reads():
        return [await blob(1) for _ in range(3)]

    assert run(reads()) == [big] * 3
    assert executor.submits == 0


def test_every_prefix_of_a_reply_is_incomplete_and_the_whole_reply_parses():
    """What the protocol relies on when a reply arrives in pieces: any prefix raises Incomplete
    (never a wrong value, never an error), the whole reply parses to its end."""
    from regions.backends.memcached.wire import Incomplete, parse_meta, parse_tagged

    key = b"ns:F2.1.2:key"
    hit = b"VA 5 t42 k" + key + b"\r\nhello\r\n"
    miss = b"EN k" + key + b"\r\n"
    tagged = hit + b"VA 2\r\n17\r\nEN\r\n"  # the replies to mg tag:a v, mg tag:b v
    cases = [
        (hit, parse_meta, key, ((b"hello", 42), len(hit))),
        (miss, parse_meta, key, (None, len(miss))),
        (tagged, parse_tagged, (key, 2), (((b"hello", 42), [b"17", None]), len(tagged))),
    ]
    for reply, parse, arg, whole in cases:
        for cut in range(len(reply)):
            with pytest.raises(Incomplete):
                parse(reply[:cut], arg)
        assert parse(reply, arg) == whole
