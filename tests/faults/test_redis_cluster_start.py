"""A Redis Cluster region whose nodes do not answer when the process starts (or forks).

redis-py's ``RedisCluster`` asks the startup nodes for the slots while it is constructed; the
region builds it at its first use instead (:class:`regions.backends.redis.client.LazyCluster`), so:

* a manager is built while no node runs: calls compute their value (a miss each), the outage is a
  log line or two, never an exception; once the nodes start and form the cluster, the breaker's
  probe builds the client and calls hit within seconds;
* a forked child of a process whose cluster is down resets its store without a warning (no
  connection is made then), and hits once the cluster is up;
* a cluster whose nodes answer but refuse keys (``CLUSTERDOWN``: a node gave up its slots) is down
  for the breaker, whose probe asks every primary for ``cluster_state``, until the slots are
  served again;
* a node's pool at ``max_connections`` is ``PoolExhausted``, not a cluster failure.

Real redis-server nodes (two, half the slots each), SIGKILLed and restarted on their ports with
their ``nodes.conf``, so they form the same cluster again.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from tests.faults.test_tags_outage import ClusterNode, two_node_cluster

TIMEOUT = 0.2
RETRY = 0.1
#: How long after the nodes answer as a cluster the first hit may come (the probe runs every
#: RETRY seconds; redis-py's refresh and the replay come first).
UP_WITHIN = 10.0


def region_config(nodes: list[ClusterNode]) -> dict[str, Any]:
    options = {"cluster": True, "socket_timeout": TIMEOUT, "connect_timeout": TIMEOUT,
               "retry_interval": RETRY}
    urls = [f"redis://{n.address}" for n in nodes]
    return {"r": {"BACKEND": "redis", "LOCATION": urls, "TIMEOUT": 300, "OPTIONS": options}}


def cluster_ok(nodes: list[ClusterNode]) -> bool:
    import redis

    try:
        for n in nodes:
            with redis.Redis(host="127.0.0.1", port=n.port, socket_timeout=1) as c:
                if c.cluster("INFO").get("cluster_state") != "ok":
                    return False
    except redis.RedisError:
        return False
    return True


def start_again(nodes: list[ClusterNode]) -> float:
    """Restart every node on its port (its nodes.conf names the other, and the slots): the moment
    they answer as one cluster."""
    for n in nodes:
        n.start()
    deadline = time.monotonic() + 30
    while not cluster_ok(nodes):
        assert time.monotonic() < deadline, "the restarted nodes never formed their cluster again"
        time.sleep(0.02)
    return time.monotonic()


class Records(logging.Handler):
    """Every record of the ``regions`` and ``redis`` loggers at WARNING or above."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def __enter__(self) -> Records:
        for name in ("regions", "redis"):
            logging.getLogger(name).addHandler(self)
        return self

    def __exit__(self, *exc: object) -> None:
        for name in ("regions", "redis"):
            logging.getLogger(name).removeHandler(self)


def test_cluster_down_when_the_manager_is_built_then_formed(tmp_path: Path, make_manager: Any) -> None:
    """Built with no node running: no exception, every call gives the function's value (computed
    each time), one or two log lines; the nodes start and form the cluster: calls hit within
    seconds (counted computations), the value the function gave."""
    nodes = two_node_cluster(tmp_path)
    try:
        for n in nodes:
            n.kill()
        with Records() as log:
            manager = make_manager(region_config(nodes))  # redis-py would connect here: it raised
            calls: Counter[int] = Counter()

            @manager.region("r")
            def double(k: int) -> int:
                calls[k] += 1
                return 2 * k

            made = 0
            outage_end = time.monotonic() + 1.0
            while time.monotonic() < outage_end:
                for k in range(8):
                    assert double(k) == 2 * k
                    made += 1
            outage_lines = len(log.records)
            assert sum(calls.values()) == made, "a call was served from a cache that never answered"
            assert manager["r"].store.breaker.down
            assert outage_lines <= 3, [r.getMessage() for r in log.records]

            formed = start_again(nodes)
            first_hit = None
            while first_hit is None:
                assert time.monotonic() - formed < UP_WITHIN, (
                    f"no hit {UP_WITHIN:g} s after the cluster formed: {manager['r'].store.health()}")
                before = calls[1]
                assert double(1) == 2
                if calls[1] == before:
                    first_hit = time.monotonic() - formed
                else:
                    time.sleep(0.01)
            before = sum(calls.values())
            for k in range(8):
                assert double(k) == 2 * k
                assert double(k) == 2 * k
            assert sum(calls.values()) - before <= 8, "the cluster is up, yet calls still compute"
        print(f"\ncluster down at start: {made} calls in 1 s computed, {outage_lines} log line(s) during "
              f"the outage; first hit {first_hit:.3f} s after the nodes formed the cluster; "
              f"{len(log.records)} line(s) in all")
    finally:
        for n in nodes:
            n.stop()


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_forked_child_of_a_process_whose_cluster_is_down(tmp_path: Path, make_manager: Any) -> None:
    """The parent's cluster goes down (its breaker is down); it forks. The child's reset makes no
    connection and logs no warning; the child's calls compute while the nodes are down, and hit
    once they are back (its result comes through a pipe)."""
    nodes = two_node_cluster(tmp_path)
    try:
        manager = make_manager(region_config(nodes))
        calls: Counter[int] = Counter()

        @manager.region("r")
        def double(k: int) -> int:
            calls[k] += 1
            return 2 * k

        assert double(1) == 2 and double(1) == 2 and calls[1] == 1  # up: a hit
        for n in nodes:
            n.kill()
        assert double(2) == 4  # the parent finds the cluster down
        assert manager["r"].store.breaker.down

        read_end, write_end = os.pipe()
        go_read, go_write = os.pipe()
        with Records() as log:
            pid = os.fork()
            if pid == 0:  # the child: report, and leave without running the parent's cleanup
                status = 1
                try:
                    os.close(read_end)
                    os.close(go_write)
                    resets = [r.getMessage() for r in log.records if "reset" in r.getMessage()]
                    down_calls = [double(3) for _ in range(5)]
                    down_computed = calls[3]
                    os.read(go_read, 1)  # the parent has started the nodes again
                    deadline, hit = time.monotonic() + UP_WITHIN, False
                    while not hit and time.monotonic() < deadline:
                        before = calls[4]
                        assert double(4) == 8
                        hit = calls[4] == before
                        time.sleep(0.01)
                    result = {"resets": resets, "down_calls": down_calls, "down_computed": down_computed,
                              "hit": hit, "lines": [r.getMessage() for r in log.records]}
                    os.write(write_end, json.dumps(result).encode())
                    status = 0
                finally:
                    os._exit(status)
            os.close(write_end)
            os.close(go_read)
            start_again(nodes)
            os.write(go_write, b"1")
            os.close(go_write)
            chunks = []
            while chunk := os.read(read_end, 65536):
                chunks.append(chunk)
            os.close(read_end)
            _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0, "the child failed"
        result = json.loads(b"".join(chunks))
        assert result["resets"] == [], result["resets"]
        assert result["down_calls"] == [6] * 5 and result["down_computed"] == 5, result
        assert result["hit"], f"the child never hit once the cluster was back: {result['lines']}"
        assert len(result["lines"]) <= 3, result["lines"]
        print(f"\nforked child: reset without a warning, {len(result['lines'])} log line(s) in all")
    finally:
        for n in nodes:
            n.stop()


def test_cluster_that_stops_serving_slots_is_down_until_it_serves_them_again(
    tmp_path: Path, make_manager: Any
) -> None:
    """Both nodes answer, but one gives up its slots (``CLUSTER DELSLOTSRANGE``: it replies
    ``CLUSTERDOWN`` to every key): a network failure, not a refused command. The breaker goes down
    (one log line, not one per call), stays down while that node says ``cluster_state:fail`` (its
    probe asks every primary, not one PING), and comes up once the slots are served again."""
    import redis

    nodes = two_node_cluster(tmp_path)
    try:
        manager = make_manager(region_config(nodes))
        store = manager["r"].store
        calls: Counter[int] = Counter()

        @manager.region("r")
        def double(k: int) -> int:
            calls[k] += 1
            return 2 * k

        for k in range(8):
            assert double(k) == 2 * k and double(k) == 2 * k
        assert sum(calls.values()) == 8
        b = redis.Redis(host="127.0.0.1", port=nodes[1].port)
        try:
            with Records() as log:
                b.execute_command("CLUSTER", "DELSLOTSRANGE", 8192, 16383)
                calls.clear()
                made = 0
                end = time.monotonic() + 1.0
                while time.monotonic() < end or made < 40:
                    for k in range(8):
                        assert double(k) == 2 * k
                        made += 1
                down_lines = len(log.records)
                assert store.breaker.down, store.health()
                assert down_lines <= 3, [r.getMessage() for r in log.records]
                assert sum(calls.values()) >= made - 8, "calls were served while the cluster was down"
                time.sleep(5 * RETRY)
                assert store.breaker.down, "the probe found the cluster up while a node served no slot"

                b.execute_command("CLUSTER", "ADDSLOTSRANGE", 8192, 16383)
                served = time.monotonic()
                deadline, hit = served + UP_WITHIN, None
                while hit is None:
                    assert time.monotonic() < deadline, f"no hit once the slots were served: {store.health()}"
                    before = calls[1]
                    assert double(1) == 2
                    if calls[1] == before:
                        hit = time.monotonic() - served
                    time.sleep(0.01)
            print(f"\nslots dropped by a node: {made} calls computed, {down_lines} log line(s); first hit "
                  f"{hit:.3f} s after the slots were served again; {len(log.records)} line(s) in all")
        finally:
            b.close()
    finally:
        for n in nodes:
            n.stop()


def test_a_cluster_node_pool_at_max_connections_is_not_a_cluster_failure(
    tmp_path: Path, make_manager: Any
) -> None:
    """A node's pool at ``max_connections`` (redis-py's ``MaxConnectionsError``, a
    ``ConnectionError``) is :class:`~regions.errors.PoolExhausted`, a miss naming the option: the
    cluster is not marked down for every region of the process."""
    nodes = two_node_cluster(tmp_path)
    try:
        config = region_config(nodes)
        config["r"]["OPTIONS"]["max_connections"] = 1
        manager = make_manager(config)
        store = manager["r"].store

        @manager.region("r")
        def same(k: int) -> int:
            return k

        assert same(1) == 1 and same(1) == 1  # the client is built, the entry stored
        pools = [node.redis_connection.connection_pool for node in store.client.get_primaries()]
        held = [pool.get_connection() for pool in pools]  # every node's only connection, busy
        try:
            with Records() as log:
                assert same(1) == 1
            assert store.breaker.down is False, store.health()
            assert any("max_connections" in r.getMessage() for r in log.records), log.records
        finally:
            for pool, conn in zip(pools, held, strict=True):
                pool.release(conn)
        hits = manager["r"].stats()["hits"]
        assert same(1) == 1 and manager["r"].stats()["hits"] == hits + 1
    finally:
        for n in nodes:
            n.stop()
