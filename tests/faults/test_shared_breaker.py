"""Several regions on one memcached server, in one process: one breaker for the server.

The server is hung for real (SIGSTOP). Before, each region had its own breaker (one per node per
region), so a worker calling two regions waited one ``timeout`` on each before both were marked
down; now the first timeout marks the server down for every region (and every manager) of the
process whose LOCATION names it. Each region still replays its own invalidations, made while the
server hung, before the server serves its reads again, and a forked child starts with the server
up and nothing to replay (its parent replays its own).

The first two hold on Redis too (``backend`` "redis": regions on one redis-server share its breaker).

``-s`` prints the figure: wall time of 10 calls alternating two regions of one hung server.
"""

from __future__ import annotations

import multiprocessing
import sys
import time
import traceback
from collections.abc import Callable
from typing import Any

import pytest

from tests.faults.conftest import FaultyMemcached, FaultyRedis

#: The regions' memcached ``timeout`` and ``connect_timeout``: the default, 1 s.
TIMEOUT = 1.0
RETRY_INTERVAL = 0.3
RECOVERY = 5.0


def region_settings(address: str, backend: str = "memcached", **options: Any) -> dict[str, Any]:
    if backend == "redis":
        opts = {"socket_timeout": TIMEOUT, "connect_timeout": TIMEOUT, "retry_interval": RETRY_INTERVAL,
                **options}
        return {"BACKEND": "redis", "LOCATION": f"redis://{address}/0", "TIMEOUT": 300, "OPTIONS": opts}
    opts = {"timeout": TIMEOUT, "connect_timeout": TIMEOUT, "retry_interval": RETRY_INTERVAL, **options}
    return {"BACKEND": "memcached", "LOCATION": address, "TIMEOUT": 300, "OPTIONS": opts}


def node_of(manager: Any, region: str) -> Any:
    """The region's one server: a memcached node, or the Redis store (its ``breaker`` and
    ``backlog`` are the server's breaker and the region's invalidations to replay)."""
    store = manager[region].store
    if not hasattr(store, "nodes"):
        return store
    [node] = store.nodes.all
    return node


@pytest.fixture(params=["memcached", "redis"])
def server_of(
    request: pytest.FixtureRequest,
    faulty_memcached: Callable[..., FaultyMemcached],
    faulty_redis: Callable[..., FaultyRedis],
) -> tuple[str, Any]:
    """``(backend, server)``: a real memcached or redis-server the test hangs (SIGSTOP)."""
    return request.param, (faulty_memcached if request.param == "memcached" else faulty_redis)()


def raw_client(backend: str, port: int) -> Any:
    """A plain client of the server (what "something else" writing its keys would use)."""
    if backend == "redis":
        import redis

        return redis.Redis(host="127.0.0.1", port=port)
    from pymemcache.client.base import Client

    return Client(("127.0.0.1", port))


@pytest.mark.parametrize("managers", [1, 2], ids=["one-manager", "two-managers"])
def test_a_hung_server_costs_one_timeout_for_every_region_on_it(
    server_of: Any, make_manager: Callable[..., Any], managers: int
) -> None:
    backend, server = server_of
    settings = region_settings(server.address, backend)
    if managers == 1:
        first = second = make_manager({"a": settings, "b": settings})
    else:  # two managers of one process (two apps, say): the server is still one
        first = make_manager({"a": settings})
        second = make_manager({"b": settings})
    data = {"v": 1}
    computed: list[str] = []

    @first.region("a", tags=lambda x: [f"item:{x}"])
    def in_a(x: int) -> tuple[str, int, int]:
        computed.append("a")
        return ("a", x, data["v"])

    @second.region("b")
    def in_b(x: int) -> tuple[str, int, int]:
        computed.append("b")
        return ("b", x, data["v"])

    for x in (1, 2):
        assert in_a(x) == ("a", x, 1) and in_b(x) == ("b", x, 1)
    computed.clear()
    assert [in_a(1), in_b(1)] == [("a", 1, 1), ("b", 1, 1)] and computed == [], "no hits before the fault"

    server.pause()
    start = time.monotonic()
    got = [in_a(1) if i % 2 == 0 else in_b(1) for i in range(10)]
    elapsed = time.monotonic() - start
    print(f"\n{backend}: 10 calls alternating two regions of one hung server ({managers} manager(s)): "
          f"{elapsed:.2f} s (timeout {TIMEOUT:g} s)")
    assert got == [("a", 1, 1), ("b", 1, 1)] * 5
    assert elapsed < 1.5 * TIMEOUT, f"{elapsed:.2f} s: more than one timeout for one server"
    assert node_of(first, "a").breaker is node_of(second, "b").breaker
    # a health report says why the server is down: its first call's timeout
    causes = [h["cause"] for m, r in ((first, "a"), (second, "b")) for h in m[r].store.health()]
    assert len(causes) == 2 and all("imeout" in str(c) for c in causes), causes

    # invalidations made while it hangs, each region's own: deferred, replayed before reads resume
    data["v"] = 2
    assert in_a.invalidate(1) is False
    assert first.invalidate_tags("item:2") is False
    assert second["b"].clear() is False
    pending = {r: h["pending"] for m, r in ((first, "a"), (second, "b")) for h in m[r].store.health()}
    assert pending["a"] >= 2 and pending["b"] >= 1, pending

    server.resume()
    deadline = time.monotonic() + RECOVERY
    while node_of(first, "a").breaker.down and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not node_of(first, "a").breaker.down, f"still down {RECOVERY:g} s after SIGCONT"
    assert not node_of(second, "b").breaker.down
    computed.clear()
    fresh = [in_a(1), in_a(2), in_b(1), in_b(2)]
    assert fresh == [("a", 1, 2), ("a", 2, 2), ("b", 1, 2), ("b", 2, 2)], "an invalidation was not replayed"
    assert computed == ["a", "a", "b", "b"]
    assert [in_a(1), in_a(2), in_b(1), in_b(2)] == fresh and len(computed) == 4, "hits did not resume"
    for manager, region in ((first, "a"), (second, "b")):
        assert [h["pending"] for h in manager[region].store.health()] == [0]


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="os.fork")
def test_a_forked_child_starts_with_the_server_up_and_nothing_to_replay(
    server_of: Any, make_manager: Callable[..., Any]
) -> None:
    """The parent marked the server down and holds an invalidation to replay; its probe will not
    run during the test (every 30 s). The server answers again, and a child is forked."""
    backend, server = server_of
    slow_probe = region_settings(server.address, backend, retry_interval=30)
    manager = make_manager({"a": slow_probe, "b": slow_probe})
    calls: list[int] = []

    @manager.region("a")
    def value(x: int) -> int:
        calls.append(x)
        return x

    assert value(1) == 1 == value(1) and calls == [1]
    server.pause()
    assert value(1) == 1  # one timeout: down for both regions
    assert manager["b"].delete("k") is False  # to replay, in the parent
    server.resume()
    parent = node_of(manager, "a").breaker
    assert parent.down and node_of(manager, "b").breaker is parent

    def child(out: Any) -> None:
        try:
            a, b = node_of(manager, "a"), node_of(manager, "b")
            before = len(calls)
            hit = value(1) == 1 and len(calls) == before
            out.put((a.breaker.down, a.breaker is b.breaker, len(a.backlog) + len(b.backlog), hit))
        except BaseException:
            out.put(traceback.format_exc())

    ctx = multiprocessing.get_context("fork")
    out = ctx.Queue()
    proc = ctx.Process(target=child, args=(out,))
    proc.start()
    try:
        report = out.get(timeout=30)
    finally:
        proc.join(10)
        if proc.is_alive():
            proc.kill()
    assert not isinstance(report, str), report
    down, shared, pending, hit = report
    assert (down, shared, pending, hit) == (False, True, 0, True)
    assert parent.down and [h["pending"] for h in manager["b"].store.health()] == [1]  # the parent's own


def test_a_replayed_bump_over_a_damaged_tag_counter_brings_the_server_back(
    server_of: Any, make_manager: Callable[..., Any]
) -> None:
    """A tag bump made while the server hung is replayed by the probe over a counter something else
    wrote (no number): it is replaced, the replay goes on, and the server is up again for both
    regions. Before, the replay raised on every round: the server stayed down for good."""
    backend, server = server_of
    short = {"socket_timeout" if backend == "redis" else "timeout": 0.3, "connect_timeout": 0.3}
    settings = region_settings(server.address, backend, **short)
    manager = make_manager({"a": settings, "b": settings})
    data = {"v": 1}

    @manager.region("a", tags=lambda x: [f"item:{x}"])
    def in_a(x: int) -> int:
        return data["v"]

    @manager.region("b")
    def in_b(x: int) -> int:
        return data["v"]

    assert in_a(1) == 1 == in_a(1) and in_b(1) == 1
    [damaged] = manager["a"].store.tags.keys(["item:0"])
    client = raw_client(backend, server.port)
    assert client.set(damaged, b"not a number", **({} if backend == "redis" else {"noreply": False}))
    server.pause()
    assert in_a(1) == 1  # one timeout: down
    data["v"] = 2
    assert manager.invalidate_tags("item:0", "item:1") is False  # deferred, in this order
    server.resume()
    deadline = time.monotonic() + RECOVERY
    while node_of(manager, "b").breaker.down and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not node_of(manager, "b").breaker.down, f"still down {RECOVERY:g} s after SIGCONT"
    assert in_a(1) == 2, "the replayed bump of item:1 did not hold"
    assert (client.get(damaged) or b"").isdigit()
    client.close()
