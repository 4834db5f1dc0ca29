"""Tags while memcached cannot be reached or is restarted: real servers, killed, or reached through
a proxy that resets every connection (the server keeps its items, and no command gets through: a
paused server would still run the commands waiting in its socket once resumed).

* A tag invalidated while the server is unreachable: ``invalidate_tags`` says ``False``, the
  ``incr`` is held, and replayed before the server serves reads again; neither this manager nor
  another one reaching the server directly (another process) is served the old entry afterwards.
* A restarted server has lost its counters: entries miss (never an old value), are stored again,
  and tags work again.
* Two servers, one unreachable during the invalidation: entries on the live one miss at once, those on
  the paused one once it is back (memcached only: a Redis region uses one server, or a Cluster).

The first two hold on Redis too (``backend`` "redis": one real redis-server, the same proxy). Redis's
form of the third is a Cluster of two real nodes, one SIGSTOPped during the invalidation (redis-py
follows the nodes' own addresses, so a proxy cannot sit in one link): no old value on either node's
keys, one timeout (not one per command of a pipeline), the bump holds after SIGCONT.
"""

from __future__ import annotations

import time
import uuid
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.faults.conftest import FaultyMemcached, FaultyRedis
from tests.faults.proxy import Proxy

TIMEOUT = 0.2
RETRY = 0.1


def config(*addresses: str, backend: str = "memcached") -> dict[str, Any]:
    if backend == "redis":
        [address] = addresses
        options = {"socket_timeout": TIMEOUT, "connect_timeout": TIMEOUT, "retry_interval": RETRY}
        url = f"redis://{address}/0"
        return {"r": {"BACKEND": "redis", "LOCATION": url, "TIMEOUT": 300, "OPTIONS": options}}
    options = {"timeout": TIMEOUT, "connect_timeout": TIMEOUT, "retry_interval": RETRY}
    return {"r": {"BACKEND": "memcached", "LOCATION": list(addresses), "TIMEOUT": 300, "OPTIONS": options}}


@pytest.fixture(params=["memcached", "redis"])
def server_of(
    request: pytest.FixtureRequest,
    faulty_memcached: Callable[..., FaultyMemcached],
    faulty_redis: Callable[..., FaultyRedis],
) -> tuple[str, Callable[[], FaultyMemcached | FaultyRedis]]:
    """``(backend, start)``: a real memcached or redis-server the test kills and restarts."""
    return request.param, faulty_memcached if request.param == "memcached" else faulty_redis


def breakers(manager: Any) -> list[Any]:
    store = manager["r"].store
    return [node.breaker for node in store.nodes.all] if hasattr(store, "nodes") else [store.breaker]


def tagged(manager: Any, data: dict[str, int], calls: Counter) -> Callable[[int], int]:
    @manager.region("r", tags=lambda k: [f"item:{k}"])
    def read(k: int) -> int:
        calls[k] += 1
        return data["version"]

    return read


def wait_up(manager: Any, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while any(breaker.down for breaker in breakers(manager)):
        assert time.monotonic() < deadline, "the server never came back"
        time.sleep(0.02)


def test_a_tag_invalidated_while_the_server_is_unreachable_is_replayed(server_of: Any, make_manager) -> None:
    backend, start = server_of
    srv = start()
    link = Proxy(srv.address)
    prefix = "to" + uuid.uuid4().hex[:8]
    one = make_manager(config(link.address, backend=backend), key_prefix=prefix)
    two = make_manager(config(srv.address, backend=backend), key_prefix=prefix)
    data, calls = {"version": 1}, Counter()
    read_one, read_two = tagged(one, data, calls), tagged(two, data, calls)
    try:
        assert read_one(1) == 1 and read_two(1) == 1 and calls[1] == 1  # two reads what one stored
        link.mode = "reset"
        data["version"] = 2
        began = time.monotonic()
        assert one.invalidate_tags("item:1") is False  # not delivered: held for the replay
        assert read_one(1) == 2  # down: computed, not stored, never the old entry
        outage = time.monotonic() - began
        assert read_two(1) == 1  # the other process could not see it yet: the server still says 1
        link.mode = "pass"
        healed = time.monotonic()
        wait_up(one)
        print(f"\n{backend}: invalidate_tags + a read over the reset link {outage:.3f} s "
              f"(timeout {TIMEOUT:g} s), "
              f"up again {time.monotonic() - healed:.3f} s after the link healed")
        assert read_one(1) == 2 and read_two(1) == 2  # the replayed incr made the old entry stale
        settled = calls[1]
        assert read_one(1) == 2 and read_two(1) == 2 and calls[1] == settled  # and cached again
    finally:
        link.close()


def test_after_a_restart_entries_miss_and_tags_work_again(server_of: Any, make_manager) -> None:
    backend, start = server_of
    srv = start()
    manager = make_manager(config(srv.address, backend=backend))
    data, calls = {"version": 1}, Counter()
    read = tagged(manager, data, calls)
    assert read(1) == 1 == read(1) and calls[1] == 1

    srv.kill()
    data["version"] = 2
    assert manager.invalidate_tags("item:1") is False
    assert read(1) == 2
    srv.start()  # empty: counters and entries are gone
    wait_up(manager)
    assert read(1) == 2 and read(1) == 2
    before = calls[1]
    data["version"] = 3
    assert manager.invalidate_tags("item:1") is True
    assert read(1) == 3 and read(1) == 3 and calls[1] == before + 1
    assert manager["r"].stats()["rejected"] == 0


def test_two_servers_one_unreachable_during_the_invalidation(
    faulty_memcached: Callable[..., FaultyMemcached], make_manager
) -> None:
    a, b = faulty_memcached(), faulty_memcached()
    link = Proxy(b.address)
    manager = make_manager(config(a.address, link.address))
    data, calls = {"version": 1}, Counter()

    @manager.region("r", tags=["shared"])
    def read(k: int) -> tuple[int, int]:
        calls[k] += 1
        return (k, data["version"])

    store = manager["r"].store
    on_a = next(k for k in range(100) if store.node_for(read.cache_key(k)).label == a.address)
    on_b = next(k for k in range(100) if store.node_for(read.cache_key(k)).label == link.address)
    try:
        assert read(on_a) == (on_a, 1) and read(on_b) == (on_b, 1)
        assert read(on_a) == (on_a, 1) and read(on_b) == (on_b, 1) and calls[on_a] == calls[on_b] == 1
        link.mode = "reset"
        data["version"] = 2
        assert manager.invalidate_tags("shared") is False  # b did not get it yet
        assert read(on_a) == (on_a, 2)  # a got it at once
        link.mode = "pass"
        wait_up(manager)
        assert read(on_b) == (on_b, 2)  # b got it before serving any read
        assert read(on_a) == (on_a, 2) and read(on_b) == (on_b, 2)
    finally:
        link.close()


class ClusterNode(FaultyRedis):
    """A node of a Redis Cluster (its nodes.conf in its folder, kept over a restart). The cluster bus
    on a free port of its own; ``cluster-node-timeout`` 60 s, so no node is failed during a test."""

    def _args(self) -> tuple[str, ...]:
        return (*super()._args(), "--cluster-enabled", "yes",
                "--cluster-config-file", str(self.folder / "nodes.conf"),
                "--cluster-port", str(getattr(self, "bus", None) or self._bus()),
                "--cluster-node-timeout", "60000")

    def _bus(self) -> int:
        from tests.conftest import free_port

        self.bus = free_port()
        return self.bus


def two_node_cluster(tmp_path: Path) -> list[ClusterNode]:
    """Two real redis-servers, half the slots each, met and agreed (``cluster_state:ok``)."""
    import redis

    a, b = ClusterNode(tmp_path / "node-a"), ClusterNode(tmp_path / "node-b")
    clients = [redis.Redis(host="127.0.0.1", port=n.port) for n in (a, b)]
    clients[0].execute_command("CLUSTER", "ADDSLOTSRANGE", 0, 8191)
    clients[1].execute_command("CLUSTER", "ADDSLOTSRANGE", 8192, 16383)
    clients[0].execute_command("CLUSTER", "MEET", "127.0.0.1", b.port, b.bus)
    deadline = time.monotonic() + 20
    while not all(c.cluster("INFO").get("cluster_state") == "ok" for c in clients):
        assert time.monotonic() < deadline, "the two nodes never formed a cluster"
        time.sleep(0.05)
    for c in clients:
        c.close()
    return [a, b]


@pytest.mark.parametrize("hung", ["the-tag-node", "the-other-node"])
def test_a_redis_cluster_node_hung_during_a_tag_invalidation(
    tmp_path: Path, make_manager: Any, hung: str
) -> None:
    """Redis's form of the two-server case: a Cluster of two real nodes, one SIGSTOPped while a tag
    is invalidated (the tag's counter on it, or on the other). No old value on either node's keys, a
    few timeouts rather than one per call, and after SIGCONT the bump holds and hits resume on both."""
    import redis
    from redis.crc import key_slot

    nodes = two_node_cluster(tmp_path)
    try:
        options = {"cluster": True, "socket_timeout": TIMEOUT, "connect_timeout": TIMEOUT,
                   "retry_interval": RETRY}
        urls = [f"redis://{n.address}" for n in nodes]
        region = {"BACKEND": "redis", "LOCATION": urls, "TIMEOUT": 300, "OPTIONS": options}
        manager = make_manager({"r": region})
        data, calls = {"version": 1}, Counter()

        @manager.region("r", tags=["shared"])
        def read(k: int) -> tuple[int, int]:
            calls[k] += 1
            return (k, data["version"])

        store = manager["r"].store

        def node_of(wire: str) -> ClusterNode:
            return nodes[0] if key_slot(wire.encode()) < 8192 else nodes[1]

        keys = {node_of(read.cache_key(k)).port: k for k in range(100)}
        assert len(keys) == 2, "no key on one of the nodes"
        [tag_key] = store.tags.keys(["shared"])
        tag_node = node_of(tag_key)
        victim = tag_node if hung == "the-tag-node" else next(n for n in nodes if n is not tag_node)
        on = sorted(keys.values())
        assert [read(k) for k in on] == [(k, 1) for k in on]
        for node in nodes:  # each node holds one of the entries read
            with redis.Redis(host="127.0.0.1", port=node.port) as raw:
                assert raw.exists(read.cache_key(keys[node.port])), f"{node.address} holds no entry read"
        assert [read(k) for k in on] == [(k, 1) for k in on] and all(calls[k] == 1 for k in on)

        victim.pause()
        data["version"] = 2
        began = time.monotonic()
        done = manager.invalidate_tags("shared")
        took = [time.monotonic() - began]
        during = []
        for k in [k for k in on for _ in range(5)]:
            began = time.monotonic()
            during.append(read(k))
            took.append(time.monotonic() - began)
        outage, slowest = sum(took), max(took)
        waited = [t for t in took if t > TIMEOUT / 2]
        assert slowest < 1.5 * TIMEOUT and len(waited) <= 1, (
            f"calls waited {[round(t, 3) for t in waited]} s: more than one timeout for one hung node "
            f"(redis-py's cluster pipeline resends each failed command alone)"
        )
        assert during == [(k, 2) for k in on for _ in range(5)], "an old value while a node hung"
        assert done in (True, False)
        if hung == "the-tag-node":
            assert done is False, "an invalidation the hung node never answered was reported as done"
        victim.resume()
        healed = time.monotonic()
        wait_up(manager)
        up = time.monotonic() - healed
        assert [read(k) for k in on] == [(k, 2) for k in on], "the bump did not hold after SIGCONT"
        settled = dict(calls)
        assert [read(k) for k in on] == [(k, 2) for k in on] and dict(calls) == settled, "hits did not resume"
        print(f"\nredis cluster, {hung} hung: invalidate_tags -> {done}, it and 10 reads took {outage:.3f} s "
              f"(timeout {TIMEOUT:g} s), up again {up:.3f} s after SIGCONT, stats {manager['r'].stats()}")
        assert manager["r"].stats()["errors"] <= 3, manager["r"].stats()
    finally:
        for n in nodes:
            n.stop()


def test_a_slot_moved_to_the_other_cluster_node_is_followed(tmp_path: Path, make_manager: Any) -> None:
    """A cached key's slot moves to the other node (its key migrated, as redis-cli --cluster reshard
    does) after the region learnt the slots: the next hits are answered by following MOVED, not taken
    for an outage (no error, the breaker stays up, nothing computed again)."""
    import redis
    from redis.crc import key_slot

    a, b = two_node_cluster(tmp_path)
    try:
        options = {"cluster": True, "socket_timeout": 1.0, "connect_timeout": 1.0}
        region = {"BACKEND": "redis", "LOCATION": [a.url], "TIMEOUT": 300, "OPTIONS": options}
        manager = make_manager({"r": region})
        calls: Counter = Counter()

        @manager.region("r", tags=lambda k: [f"item:{k}"])
        def read(k: int) -> int:
            calls[k] += 1
            return k * 10

        k = next(k for k in range(100) if key_slot(read.cache_key(k).encode()) < 8192)  # on a
        assert read(k) == read(k) == k * 10 and calls[k] == 1
        slot = key_slot(read.cache_key(k).encode())
        ra, rb = redis.Redis(host="127.0.0.1", port=a.port), redis.Redis(host="127.0.0.1", port=b.port)
        ida, idb = ra.execute_command("CLUSTER", "MYID"), rb.execute_command("CLUSTER", "MYID")
        rb.execute_command("CLUSTER", "SETSLOT", slot, "IMPORTING", ida)
        ra.execute_command("CLUSTER", "SETSLOT", slot, "MIGRATING", idb)
        moved = ra.execute_command("CLUSTER", "GETKEYSINSLOT", slot, 1000)
        assert moved, "the cached key is not on a"
        ra.execute_command("MIGRATE", "127.0.0.1", b.port, "", 0, 5000, "KEYS", *moved)
        for client in (ra, rb):
            client.execute_command("CLUSTER", "SETSLOT", slot, "NODE", idb)
        assert rb.execute_command("CLUSTER", "COUNTKEYSINSLOT", slot) == len(moved)
        ra.close()
        rb.close()
        assert [read(k) for _ in range(5)] == [k * 10] * 5
        stats = manager["r"].stats()
        assert calls[k] == 1, f"computed again after the slot moved: {stats}"
        assert stats["errors"] == 0 and not manager["r"].store.breaker.down, stats
    finally:
        a.stop()
        b.stop()
