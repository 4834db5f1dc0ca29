"""The memcached fault suite, on Redis: a real redis-server hung (SIGSTOP), killed and restarted
(empty, or with its dataset), a link dropping or resetting traffic through the TCP proxy, and a
Sentinel failover (two redis-servers and one redis-sentinel from /usr/bin).

Each fault is held to the measures of :mod:`tests.faults.test_outage` and
:mod:`tests.faults.test_invalidation`: no wrong result and no exception reaches a caller; at most
the call each caller had under way waits on the network (one timeout per outage); the slowest call
is under two timeouts; hits resume within 5 s of the server answering; a failed invalidation is
reported (return value and log) and replayed before the server's reads are served again, so the
old value never comes back, here or in another process. Every public operation (sync and async)
answers by the failure policy within about one timeout (:mod:`tests.faults.test_public_ops`), and an
outage logs a few lines, not one per call, while ``stats()`` counts every call.

The region is named "mc", as the shared workers and helpers of the memcached suite expect.
``-s`` prints each fault's figures (the closing note's table).
"""

from __future__ import annotations

import logging
import subprocess
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import free_port
from tests.faults import outages
from tests.faults import test_invalidation as inv
from tests.faults import test_public_ops as ops
from tests.faults.conftest import FaultyRedis
from tests.faults.outages import (
    RECOVERY,
    RETRY_INTERVAL,
    TIMEOUT,
    check,
    report,
    run_threads,
    served_before,
)
from tests.faults.proxy import Proxy
from tests.faults.workers import Computations

redis = pytest.importorskip("redis")


def redis_config(address: str, **options: Any) -> dict[str, Any]:
    """A Redis region "mc" at ``address`` ("127.0.0.1:PORT"), timeouts as the memcached suite's."""
    opts = {"socket_timeout": TIMEOUT, "connect_timeout": TIMEOUT, "retry_interval": RETRY_INTERVAL,
            **options}
    return {"mc": {"BACKEND": "redis", "LOCATION": f"redis://{address}/0", "TIMEOUT": 300, "OPTIONS": opts}}


class RedisSetup(inv.Setup):
    """:class:`tests.faults.test_invalidation.Setup` over a Redis region."""

    config = staticmethod(redis_config)


# -- outages under four threads -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fault", "begin", "end", "persist"),
    [
        ("redis SIGSTOP 3 s, 4 threads", "pause", "resume", False),
        ("redis SIGKILL, restart empty after 3 s, 4 threads", "kill", "start", False),
        ("redis SIGKILL, restart with its dataset after 3 s, 4 threads", "kill", "start", True),
    ],
    ids=["hung", "killed-restarted-empty", "killed-restarted-with-data"],
)
def test_redis_outage_under_four_threads(
    faulty_redis: Callable[..., FaultyRedis],
    make_manager: Callable[..., Any],
    tmp_path: Path,
    fault: str,
    begin: str,
    end: str,
    persist: bool,
) -> None:
    """A hung or killed redis-server costs one timeout per caller at most, then hits resume."""
    server = faulty_redis(persist=persist)
    manager = make_manager(redis_config(server.address))
    outages.outage_under_four_threads(server, manager, fault, begin=begin, end=end)


def test_redis_hung_under_four_processes(faulty_redis: Callable[..., FaultyRedis]) -> None:
    """SIGSTOP for 3 s under 4 spawned processes, each with its own pool and breaker."""
    server = faulty_redis()
    outages.hung_under_four_processes(server, redis_config(server.address), "redis SIGSTOP 3 s, 4 processes")


# -- invalidations during an outage ---------------------------------------------------------------


def test_an_invalidation_made_while_killed_holds_after_a_restart_with_the_dataset(
    faulty_redis: Callable[..., FaultyRedis],
    make_manager: Callable[..., Any],
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The hardest restart: the server comes back with the old entry on disk. The delete made while
    it was down was reported (``False``, a log line) and is replayed before its reads are served:
    the old value never comes back, here or in another process."""
    server = faulty_redis(persist=True)
    key_prefix = "inv" + uuid.uuid4().hex[:10]
    data = inv.Data()

    def load(x: int) -> tuple[int, str]:
        return data.load(x)

    manager = make_manager(redis_config(server.address), key_prefix=key_prefix)
    f = manager.region("mc")(load)
    assert f(1) == f(1) == (1, inv.OLD) and data.computed == 1
    server.kill()
    caplog.set_level(logging.WARNING, logger="regions")
    caplog.clear()
    data.version = inv.NEW
    start = time.monotonic()
    assert f.invalidate(1) is False, "an invalidation the server never got was reported as done"
    took = time.monotonic() - start
    assert inv.regions_warnings(caplog, within=inv.BOUND), "the failed invalidation was not logged"
    assert f(1) == (1, inv.NEW)  # meanwhile: the function's own result

    server.start()
    other = make_manager(redis_config(server.address), key_prefix=key_prefix)
    raw = redis.Redis.from_url(f"redis://{server.address}/0")
    assert raw.exists(f.cache_key(1)), "the restarted server did not load its dataset: nothing is tested"
    healed = time.monotonic()
    hit_at = None
    calls = 0
    while time.monotonic() < healed + RECOVERY and (hit_at is None or time.monotonic() < hit_at + 0.5):
        before = data.computed
        assert f(1) == (1, inv.NEW), f"an old value {time.monotonic() - healed:.2f} s after the restart"
        calls += 1
        if hit_at is None and data.computed == before:
            hit_at = time.monotonic()
        time.sleep(0.02)
    assert hit_at is not None, f"f(1) was not served by the cache within {RECOVERY} s of the restart"
    assert other.region("mc")(load)(1) == (1, inv.NEW), "another process sees the old value"
    print(f"\nredis killed, invalidate(1) -> False in {took * 1000:.0f} ms, restarted with its dataset: "
          f"hits resumed {hit_at - healed:.2f} s later, {calls} calls, 0 old values")




@pytest.mark.parametrize(
    ("op", "fault"),
    # (the async operations over a dropped link once left the key's shared lock held for
    # lock_timeout: their release, on an I/O thread, fell inside the outage; a failed release is
    # now replayed like an invalidation, tests/test_redis.py::test_a_release_that_fails_is_replayed)
    [(op, fault) for fault in ("drop", "reset") for op in inv.ALL_OPERATIONS],
)
def test_redis_failed_invalidation_reports_and_holds_after_heal(
    op: str,
    fault: str,
    faulty_redis: Callable[..., FaultyRedis],
    proxy: Callable[[str], Proxy],
    make_manager: Callable[..., Any],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """One invalidation over a link that drops or resets traffic: reported, bounded in time, and in
    force once the link heals (here and in another process)."""
    server = faulty_redis()
    s = RedisSetup(server.address, proxy(server.address), make_manager)
    caplog.set_level(logging.WARNING, logger="regions")
    caplog.clear()

    s.data.version = inv.NEW
    s.link.mode = fault  # type: ignore[assignment]
    start = time.monotonic()
    result = inv.ALL_OPERATIONS[op](s)
    took = time.monotonic() - start

    assert took < inv.BOUND, f"{op} took {took:.2f} s on a broken link (timeout {TIMEOUT} s)"
    assert result == inv.expected(op), f"{op} on a broken link returned {result!r}"
    logged = inv.regions_warnings(caplog, within=inv.BOUND)
    assert logged, f"{op} failed on a broken link and nothing was logged"
    if fault == "drop":
        assert s.link.dropped > 0, "the proxy dropped nothing: the operation never tried the server"
    for _ in range(5):
        start = time.monotonic()
        assert s.read((s.f, s.af), inv.target_of(op)) == (1, inv.NEW)
        assert time.monotonic() - start < inv.BOUND

    target = inv.target_of(op)
    recovery, calls = s.watch_heal(target)
    assert s.other_process_view(target) == (1, inv.NEW), "another process sees the old value after the heal"
    print(f"\nredis {op} over a link in {fault!r}: returned {result!r} in {took * 1000:.0f} ms, "
          f"{len(logged)} log line(s), hits resumed {recovery:.2f} s after the heal, {calls} calls, "
          "0 old values")


def test_redis_dropped_link_under_four_threads(
    faulty_redis: Callable[..., FaultyRedis], proxy: Callable[[str], Proxy], make_manager: Callable[..., Any]
) -> None:
    """The link drops every byte for 3 s (connections stay open): one timeout per caller at most."""
    server = faulty_redis()
    link = proxy(server.address)
    manager = make_manager(redis_config(link.address))
    comps = Computations()
    func = manager.region("mc")(comps.compute)

    def drop() -> None:
        link.mode = "drop"

    def heal() -> None:
        link.mode = "pass"

    out, per_caller, fault_start = run_threads(func, comps, begin_fault=drop, end_fault=heal, fault_seconds=3)
    stats = manager["mc"].stats()
    report("redis link dropping 3 s, 4 threads", out, stats, manager["mc"].store)
    assert link.dropped > 0, "the proxy dropped nothing"
    assert served_before(per_caller, fault_start) > 0, "the cache served nothing before the fault"
    check(out, stats)


# -- Sentinel failover ----------------------------------------------------------------------------


class Sentinel:
    """One redis-sentinel (quorum 1) watching ``master`` as "mymaster", failing over in about 1 s."""

    def __init__(self, folder: Path, master_port: int) -> None:
        self.port = free_port()
        conf = folder / "sentinel.conf"  # redis-sentinel rewrites its config file: one of its own
        conf.write_text(
            f"port {self.port}\nbind 127.0.0.1\ndir {folder}\n"
            f"sentinel monitor mymaster 127.0.0.1 {master_port} 1\n"
            "sentinel down-after-milliseconds mymaster 500\n"
            "sentinel failover-timeout mymaster 5000\n"
        )
        self.proc = subprocess.Popen(["redis-sentinel", str(conf)], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
        self.client = redis.Redis(port=self.port, socket_timeout=1)

    def master_port(self) -> int | None:
        try:
            found = self.client.execute_command("SENTINEL", "GET-MASTER-ADDR-BY-NAME", "mymaster")
        except redis.RedisError:
            return None
        return int(found[1]) if found else None

    def replicas(self) -> int:
        try:
            return len(self.client.execute_command("SENTINEL", "REPLICAS", "mymaster") or [])
        except redis.RedisError:
            return 0

    def stop(self) -> None:
        self.proc.kill()
        self.proc.wait(5)


def wait_for(what: str, cond: Callable[[], bool], seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while not cond():
        assert time.monotonic() < deadline, f"{what} within {seconds} s"
        time.sleep(0.05)


def test_redis_sentinel_failover_under_four_threads(
    faulty_redis: Callable[..., FaultyRedis], make_manager: Callable[..., Any], tmp_path: Path
) -> None:
    """The master is SIGKILLed; the sentinel promotes the replica; the region, which knows the
    master only by the sentinel's name for it, follows: no wrong value, no exception, one timeout
    per caller at most, hits within 5 s of the promotion."""
    master = faulty_redis()
    replica = faulty_redis()
    raw_replica = redis.Redis(port=replica.port)
    raw_replica.execute_command("REPLICAOF", "127.0.0.1", str(master.port))
    wait_for("the replica syncs", lambda: raw_replica.info("replication").get("master_link_status") == "up")
    sentinel = Sentinel(tmp_path, master.port)
    try:
        wait_for("the sentinel names the master", lambda: sentinel.master_port() == master.port)
        wait_for("the sentinel finds the replica", lambda: sentinel.replicas() == 1)
        opts = {"socket_timeout": TIMEOUT, "connect_timeout": TIMEOUT, "retry_interval": RETRY_INTERVAL,
                "sentinel": {"service": "mymaster", "addresses": [f"127.0.0.1:{sentinel.port}"]}}
        manager = make_manager({"mc": {"BACKEND": "redis", "LOCATION": "redis://mymaster/0", "TIMEOUT": 300,
                                       "OPTIONS": opts}})
        comps = Computations()
        func = manager.region("mc")(comps.compute)
        promoted: list[float] = []

        def promote() -> None:
            wait_for("the sentinel promotes the replica", lambda: sentinel.master_port() == replica.port)
            promoted.append(time.monotonic())

        killed = time.monotonic()
        out, per_caller, fault_start = run_threads(
            func, comps, begin_fault=master.kill, end_fault=promote, fault_seconds=0
        )
        stats = manager["mc"].stats()
        report(f"redis Sentinel failover (promoted {promoted[0] - killed:.2f} s after SIGKILL), 4 threads",
               out, stats, manager["mc"].store)
        assert served_before(per_caller, fault_start) > 0, "the cache served nothing before the failover"
        check(out, stats)
        assert raw_replica.info("replication")["role"] == "master"
        assert raw_replica.dbsize() > 0, "nothing was stored on the promoted replica"
    finally:
        sentinel.stop()


# -- every public operation, as tests/faults/test_public_ops.py ----------------------------------


@pytest.mark.parametrize("fault", ["killed", "hung", "down-from-the-start"])
def test_redis_every_operation_follows_the_failure_policy(
    fault: str, faulty_redis: Callable[..., FaultyRedis], make_manager: Callable[..., Any]
) -> None:
    """Every public operation, sync and async, with redis-server SIGKILLed, SIGSTOPped, or dead
    before the region's first call: the policy's answer, no exception, about one timeout each;
    once it answers again, the region caches again and invalidations say ``True``."""
    server = faulty_redis()
    if fault == "down-from-the-start":
        server.kill()
    manager = make_manager(redis_config(server.address))
    region = manager["mc"]
    fn = ops.Functions(manager)
    if fault != "down-from-the-start":
        ops.warm(fn, region)
        server.kill() if fault == "killed" else server.pause()
    ops.run_all(fn, region, f"redis {fault}")
    server.resume() if fault == "hung" else server.start()
    print(f"cached again {ops.wait_until_served(region):.2f} s after redis-server answered")
    ops.invalidations_succeed(fn, region)


@pytest.mark.parametrize("fault", ["refused", "hung"])
def test_redis_raise_errors_lets_failures_through(
    fault: str, faulty_redis: Callable[..., FaultyRedis], make_manager: Callable[..., Any]
) -> None:
    """``OPTIONS raise_errors=True``: a call and an invalidation that fail raise, within a timeout."""
    server = faulty_redis()
    server.pause() if fault == "hung" else server.kill()
    manager = make_manager(redis_config(server.address, raise_errors=True))
    fn = ops.Functions(manager)
    for name, op in [("f(x)", lambda: fn.f(1)), ("f.invalidate(x)", lambda: fn.f.invalidate(1))]:
        start = time.monotonic()
        with pytest.raises(Exception):  # noqa: B017 - any backend error, as long as it reaches us
            op()
        seconds = time.monotonic() - start
        assert seconds < ops.ONE_TIMEOUT, f"{name} took {seconds:.2f} s before raising"


def test_a_redis_outage_logs_a_few_lines_and_counts_every_call(
    faulty_redis: Callable[..., FaultyRedis],
    make_manager: Callable[..., Any],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """redis-server killed, 2 s of calls from 2 threads: at most 3 warning lines, not one per call;
    ``stats()`` counts every failed or skipped call. Back up: one line says so."""
    server = faulty_redis()
    manager = make_manager(redis_config(server.address))
    outages.outage_logs_a_few_lines_and_counts_every_call(
        server, manager, caplog, "redis killed 2 s, 2 threads"
    )
