"""The Redis region on a real redis-server: what the contract kit (tests/test_contract.py) cannot
see from outside — round trips per hit, what ``clear()`` leaves, leases and lock tokens across
real processes, settings errors, a real fork, the server's clock, the breaker under SIGSTOP, the
stream log, and a (one-node) Redis Cluster."""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import subprocess
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
import redis

import regions
from regions import config
from regions.backends.contract import is_fresh
from regions.errors import ConfigurationError
from tests import redis_workers as rw
from tests import sync_workers as w
from tests.conftest import probe_until


def _raw(url: str) -> redis.Redis:
    return redis.Redis.from_url(url)


def _stats(client: redis.Redis) -> tuple[int, dict[str, int]]:
    """(read events the server processed, calls per command) so far."""
    reads = int(client.info("stats")["total_reads_processed"])
    stats = client.info("commandstats")
    calls = {name.removeprefix("cmdstat_"): int(v["calls"]) for name, v in stats.items()}
    return reads, calls


Counts = tuple[int, dict[str, int]]


def _delta(before: Counts, after: Counts) -> Counts:
    calls = {k: v - before[1].get(k, 0) for k, v in after[1].items() if v != before[1].get(k, 0)}
    calls.pop("info", None)
    return after[0] - before[0], calls


def _one_region(make_manager: Any, url: str, **settings: Any) -> regions.CacheManager:
    return make_manager({"r": {"BACKEND": "redis", "LOCATION": url, "TIMEOUT": 300, **settings}})


# one round trip per hit ------------------------------------------------------------------------


def test_a_hit_is_one_round_trip_of_get_and_pttl(make_manager: Any, redis_factory: Any) -> None:
    # a server of its own: the counts are the server's, and another test's waker (push) may still
    # be reading the session server's streams
    redis_server = redis_factory().url
    manager = _one_region(make_manager, redis_server)

    @manager.region("r")
    def f(x: int) -> list[int]:
        return [x] * 10

    @manager.region("r", tags=lambda x: [f"item:{x}", "all"])
    def g(x: int) -> int:
        return x

    assert f(1) == [1] * 10 and g(1) == 1  # stored
    client = _raw(redis_server)
    # what the two INFO calls themselves cost, measured as the hits are (same connection, same way)
    before = _stats(client)
    empty = _delta(before, _stats(client))
    before = _stats(client)
    for _ in range(25):
        assert f(1) == [1] * 10
    reads, calls = _delta(before, _stats(client))
    assert (reads - empty[0], calls) == (25, {"get": 25, "pttl": 25})
    before = _stats(client)
    for _ in range(25):
        assert g(1) == 1
    reads, calls = _delta(before, _stats(client))
    assert (reads - empty[0], calls) == (25, {"get": 25, "pttl": 25, "mget": 25})
    assert manager["r"].stats()["hits"] == 50


# clear and invalidate_all touch only their own keys ------------------------------------------


def test_clear_leaves_other_regions_and_foreign_keys(make_manager: Any, redis_server: str) -> None:
    prefix = "c" + uuid.uuid4().hex[:8]
    manager = make_manager({
        "a": {"BACKEND": "redis", "LOCATION": redis_server},
        "ab": {"BACKEND": "redis", "LOCATION": redis_server},
    }, key_prefix=prefix)
    calls: list[str] = []

    @manager.region("a", tags=lambda x: ["t"])
    def fa(x: int) -> int:
        calls.append(f"a{x}")
        return x

    @manager.region("ab")
    def fb(x: int) -> int:
        calls.append(f"b{x}")
        return x

    client = _raw(redis_server)
    client.set("someone-else:key", b"theirs")
    client.set(f"{prefix}:a:not-ours", b"theirs too")
    for x in range(3):
        fa(x), fb(x)
    assert manager["a"].count() == 3 and manager["ab"].count() == 3
    manager["a"].clear()
    assert manager["a"].count() == 0 and manager["ab"].count() == 3
    assert client.get("someone-else:key") == b"theirs" and client.get(f"{prefix}:a:not-ours") == b"theirs too"
    calls.clear()
    for x in range(3):
        fa(x), fb(x)
    assert calls == ["a0", "a1", "a2"]  # a recomputed, ab served from Redis
    fb.invalidate_all()  # the namespace only
    assert manager["ab"].count() == 0 and manager["a"].count() == 3
    client.delete("someone-else:key", f"{prefix}:a:not-ours")


# leases: an invalidation in another process voids a computation under way ---------------------


def _spawn(target: Any, *args: Any) -> Any:
    ctx = multiprocessing.get_context("spawn")
    out = ctx.Queue()
    proc = ctx.Process(target=target, args=(*args, out))
    proc.start()
    try:
        return out.get(timeout=60)
    finally:
        proc.join(60)


def test_a_delete_from_another_process_voids_the_lease(redis_server: str, tmp_path: Path) -> None:
    data = str(tmp_path / "data.txt")
    w.write_version(data, 1)
    settings = {"config": {"r": {"BACKEND": "redis", "LOCATION": redis_server, "TIMEOUT": 300}},
                "prefix": "l" + uuid.uuid4().hex[:8], "secret": "s-" + uuid.uuid4().hex}
    inside, release = threading.Event(), threading.Event()

    def hold() -> None:
        if threading.current_thread().name == "slow":
            inside.set()
            assert release.wait(30)

    manager = rw.build(settings)
    try:
        value = rw.make_reader(manager, data, hold)
        results: list[Any] = []
        slow = threading.Thread(target=lambda: results.append(value(1)), name="slow")
        slow.start()
        assert inside.wait(10)
        w.write_version(data, 2)
        proc = multiprocessing.get_context("spawn").Process(
            target=rw.invalidate_once, args=(settings, data, 1)
        )
        proc.start()
        proc.join(60)
        assert proc.exitcode == 0
        release.set()
        slow.join(10)
        assert results == [(1, 1)]
        assert value(1) == (1, 2)
        assert _spawn(rw.read_once, settings, data, 1) == (1, 2)
        assert manager["r"].stats()["voided"] == 1
    finally:
        release.set()
        manager.close()


# the lock's token ---------------------------------------------------------------------------


def test_a_lock_release_deletes_only_its_own_token(make_manager: Any, redis_server: str) -> None:
    from regions.backends.redis.lock import TokenLock

    manager = _one_region(make_manager, redis_server, OPTIONS={"lock_timeout": 0.3})
    store = manager["r"].store
    name = "~lock:test-" + uuid.uuid4().hex
    mine, other = TokenLock(store, name), TokenLock(store, name)
    assert mine.acquire(0) is True
    assert other.acquire(0) is False
    assert mine.release() is True
    assert other.acquire(0) is True and other.release() is True
    assert mine.acquire(0) is True
    deadline = time.monotonic() + 10
    while _raw(redis_server).exists(name) and time.monotonic() < deadline:
        time.sleep(0.05)  # held past lock_timeout: expired by the server
    assert _spawn(rw.take_lock, redis_server, name) is True  # another process holds it now
    assert mine.release() is False  # not ours any more: left alone
    assert _raw(redis_server).exists(name) == 1
    _raw(redis_server).delete(name)


def _until_up_and_gone(manager: Any, url: str, name: str) -> None:
    """Until the server is up again and ``name`` gone (or 20 s)."""
    store = manager["r"].store
    probe_until(manager, "r", lambda: not store.breaker.down and not _raw(url).exists(name))
    assert store.breaker.down is False, "the server never came back"


def test_a_release_that_fails_is_replayed_when_the_server_is_back(
    make_manager: Any, redis_factory: Any
) -> None:
    """A lock released while the server cannot be reached is released when it answers again (as
    deferred invalidations are), not left for ``lock_timeout``: the key's next caller would wait."""
    from regions.backends.redis.lock import TokenLock
    from tests.conftest import pause

    server = redis_factory()
    manager = _one_region(make_manager, server.url, OPTIONS={"lock_timeout": 60, "socket_timeout": 0.3,
                                                              "connect_timeout": 0.3, "retry_interval": 0.1})
    store = manager["r"].store
    name = "~lock:test-" + uuid.uuid4().hex
    lock = TokenLock(store, name)
    assert lock.acquire(0) is True
    pause(server.proc.pid)
    try:
        with pytest.raises(Exception):  # noqa: B017 (what redis-py raises on a timeout)
            lock.release()
        assert store.breaker.down is True
    finally:
        os.kill(server.proc.pid, signal.SIGCONT)
    assert _raw(server.url).pttl(name) > 50_000  # still held on the server: the release did not arrive
    _until_up_and_gone(manager, server.url, name)
    assert _raw(server.url).exists(name) == 0, "the failed release was not replayed"
    assert TokenLock(store, name).acquire(0) is True  # the next caller takes it at once


def test_a_take_the_server_did_not_answer_is_released_when_it_is_back(
    make_manager: Any, redis_factory: Any
) -> None:
    """A hung server applies the ``SET NX`` it received when it resumes, though the caller timed out
    and computed without the lock: that lock is released when the server answers again, not held
    for ``lock_timeout`` by nobody (the key's next caller would wait all of it; a tag test of a
    Redis Cluster waited 30 s after SIGCONT, 1 run in 7, before this)."""
    from regions.backends.redis.lock import TokenLock
    from tests.conftest import pause

    server = redis_factory()
    manager = _one_region(make_manager, server.url, OPTIONS={"lock_timeout": 60, "socket_timeout": 0.3,
                                                              "connect_timeout": 0.3, "retry_interval": 0.1})
    store = manager["r"].store
    name = "~lock:test-" + uuid.uuid4().hex
    manager["r"].namespace("probe").get_entry("k")  # a connection made while the server answers
    pause(server.proc.pid)
    try:
        with pytest.raises(Exception):  # noqa: B017 (what redis-py raises on a timeout)
            TokenLock(store, name).acquire(0)
        assert store.breaker.down is True
    finally:
        os.kill(server.proc.pid, signal.SIGCONT)
    deadline = time.monotonic() + 5
    while not _raw(server.url).exists(name) and time.monotonic() < deadline:
        time.sleep(0.01)  # the server applies the take it held once it runs again
    assert _raw(server.url).pttl(name) > 50_000, "the resumed server did not apply the take"
    _until_up_and_gone(manager, server.url, name)
    assert _raw(server.url).exists(name) == 0, "the take the server applied late still holds the lock"
    assert TokenLock(store, name).acquire(0) is True  # the next caller takes it at once


# settings -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("location", "options", "option", "words"),
    [
        ("127.0.0.1:6379", {}, "LOCATION", "redis://"),
        ("http://127.0.0.1:6379", {}, "LOCATION", "redis://"),
        (["redis://a:1", "redis://b:2"], {}, "LOCATION", "cluster"),
        ("redis://a:1", {"sentinel": {"addresses": ["s:26379"]}}, "OPTIONS.sentinel", "service"),
        ("redis://a:1", {"sentinel": {"service": "m", "addresses": ["x"]}}, "OPTIONS.sentinel", "host:port"),
        ("redis://a:1", {"ssl_ca_certs": "/ca.pem"}, "OPTIONS.ssl_ca_certs", "rediss://"),
        ("rediss://a:1", {"ssl_cert_reqs": "maybe"}, "OPTIONS.ssl_cert_reqs", "required"),
        ("redis://a:1", {"cluster": True, "db": 2}, "OPTIONS.db", "db"),
        ("redis://a:1", {"socket_timeout": "1"}, "OPTIONS.socket_timeout", "socket_timeout"),
        ("redis://a:1", {"max_connection": 4}, "OPTIONS.max_connection", "max_connections"),
    ],
)
def test_bad_settings_name_region_option_and_remedy(
    location: Any, options: dict, option: str, words: str
) -> None:
    settings = {"r": {"BACKEND": "redis", "LOCATION": location, "OPTIONS": options}}
    problems = config.check(settings)
    assert [(p.region, p.option) for p in problems][:1] == [("r", option)]
    assert words in problems[0].message + problems[0].hint
    with pytest.raises(ConfigurationError) as info:
        regions.CacheManager(settings)
    assert info.value.region == "r" and info.value.option == option


# fork -----------------------------------------------------------------------------------------


def test_a_forked_child_uses_connections_of_its_own(make_manager: Any, redis_server: str) -> None:
    manager = _one_region(make_manager, redis_server)

    @manager.region("r")
    def f(x: int) -> int:
        return x * 10

    assert f(1) == 10 and f(1) == 10  # the parent's pool holds a connection now
    parent_conn = manager["r"].store.client.connection_pool
    stop = threading.Event()
    parent_errors: list[BaseException] = []

    def keep_reading() -> None:  # the parent reads on while the child runs
        while not stop.is_set():
            try:
                assert f(1) == 10
            except BaseException as exc:  # noqa: BLE001
                parent_errors.append(exc)
                return

    reader = threading.Thread(target=keep_reading)
    reader.start()
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child
        code = 1
        try:
            os.close(read_end)
            ok = all(f(1) == 10 for _ in range(200)) and f(2) == 20 and f(2) == 20
            st = manager["r"].stats()
            os.write(write_end, f"{ok} {st['errors']} {os.getpid()}".encode())
            code = 0
        finally:
            os._exit(code)
    os.close(write_end)
    with os.fdopen(read_end) as pipe:
        report = pipe.read()
    _, status = os.waitpid(pid, 0)
    stop.set()
    reader.join(10)
    assert os.WEXITSTATUS(status) == 0 and report.split()[:2] == ["True", "0"], report
    assert parent_errors == []
    assert f(2) == 20 and manager["r"].stats()["misses"] == 1  # the child's entry, read here
    assert manager["r"].store.client.connection_pool is parent_conn
    assert manager["r"].stats()["errors"] == 0


# freshness from the server's clock ------------------------------------------------------------


@pytest.mark.parametrize("skew", [-50.0, 50.0])
def test_an_entry_lives_by_the_server_not_the_writer_clock(make_manager: Any, redis_server: str,
                                                          skew: float) -> None:
    manager = _one_region(make_manager, redis_server)
    ns = manager["r"].store.namespace("skewed")
    ns.set_entry("k", (time.time() + skew, 5.0, "v"))  # a writer whose clock is 50 s off
    entry = ns.get_entry("k")
    assert entry is not None and entry[2] == "v"
    assert abs(entry[0] - time.time()) < 2  # rebased on the server's count of its life
    assert is_fresh(entry, time.time())
    assert _raw(redis_server).pttl(ns.wire_key("k")) <= 35_000  # TIMEOUT 5 + stale 30, in ms


# the breaker -----------------------------------------------------------------------------------


def test_a_stopped_server_is_a_miss_logged_once_and_its_deletes_replayed(
    make_manager: Any, redis_factory: Any, caplog: pytest.LogCaptureFixture
) -> None:
    server = redis_factory()
    manager = _one_region(make_manager, server.url,
                          OPTIONS={"socket_timeout": 0.2, "connect_timeout": 0.2, "retry_interval": 0.1})
    computed: list[int] = []

    @manager.region("r")
    def f(x: int) -> int:
        computed.append(x)
        return x

    assert f(1) == 1 and f(1) == 1 and computed == [1]
    wire = f.cache_key(1)
    from tests.conftest import pause

    pause(server.proc.pid)
    try:
        with caplog.at_level(logging.WARNING, logger="regions"):
            assert [f(1) for _ in range(5)] == [1] * 5  # the function's own result, no exception
            f.invalidate(1)  # deferred: replayed before the server serves reads again
        down = [r for r in caplog.records if "is down" in r.getMessage()]
        assert len(down) == 1, [r.getMessage() for r in caplog.records]
        assert manager["r"].store.breaker.down is True
    finally:
        os.kill(server.proc.pid, signal.SIGCONT)
    deadline = time.monotonic() + 20
    while manager["r"].store.breaker.down and time.monotonic() < deadline:
        time.sleep(0.05)
    assert manager["r"].store.breaker.down is False
    assert _raw(server.url).exists(wire) == 0  # the delete made during the outage reached it
    computed.clear()
    assert f(1) == 1 and computed == [1]


# the stream log ------------------------------------------------------------------------------


def test_the_log_on_a_stream_appends_reads_and_waits(make_manager: Any, redis_server: str) -> None:
    manager = _one_region(make_manager, redis_server)
    log = manager["r"].store.sync_storage("log-" + uuid.uuid4().hex)
    head = log.head()
    assert log.head() == head  # made once, then read
    first, second = log.append(b"one"), log.append(b"two")
    assert (first, second) == (head + 1, head + 2) and log.head() == second
    assert log.records(head, second + 5) == {first: b"one", second: b"two"}
    assert log.records(second, second) == {second: b"two"}
    assert log.wait(second, 0.05) is False
    assert log.wait(first, 0.05) is True
    timer = threading.Timer(0.2, log.append, args=(b"three",))
    timer.start()
    assert log.wait(second, 10) is True  # woken by the append, long before 10 s
    timer.join()
    assert log.records(second + 1, second + 1) == {second + 1: b"three"}
    client = _raw(redis_server)
    client.set(log.seq_key, head)  # the counter went back (rewritten): the next append jumps past it
    assert log.append(b"four") == second + 2


# Redis Cluster (one node holding every slot) ---------------------------------------------------


def test_a_cluster_region(make_manager: Any, redis_factory: Any, tmp_path: Path) -> None:
    from tests.conftest import free_port

    nodes = tmp_path / "nodes.conf"
    # the cluster bus's own port: the default (port + 10000) may be past 65535 for a free port
    server = redis_factory(extra_args=("--cluster-enabled", "yes", "--cluster-config-file", str(nodes),
                                       "--cluster-port", str(free_port())))
    subprocess.run(["redis-cli", "-p", str(server.port), "cluster", "addslotsrange", "0", "16383"],
                   check=True, capture_output=True)
    client = _raw(server.url)
    deadline = time.monotonic() + 20
    while client.cluster("INFO").get("cluster_state") != "ok" and time.monotonic() < deadline:
        time.sleep(0.05)
    manager = _one_region(make_manager, server.url, OPTIONS={"cluster": True})
    computed: list[int] = []

    @manager.region("r", tags=lambda x: [f"item:{x}"])
    def f(x: int) -> int:
        computed.append(x)
        return x

    @manager.region("r")
    def plain(x: int) -> int:  # no tags: the hit's GET + PTTL alone, routed by their key
        computed.append(-x)
        return -x

    assert [f(1), f(1), f(2)] == [1, 1, 2] and computed == [1, 2]
    assert [plain(1), plain(1), plain(1)] == [-1, -1, -1] and computed == [1, 2, -1], "an untagged hit missed"
    assert manager.invalidate_tags("item:1") is True
    assert f(1) == 1 and computed == [1, 2, -1, 1]
    assert manager["r"].count() == 3
    manager["r"].clear()
    assert manager["r"].count() == 0
    stats = manager["r"].stats()
    assert stats["errors"] == 0 and stats["hits"] == 3, stats


# Sentinel (one master, one sentinel) and Beaker's own settings ---------------------------------


def test_a_region_through_sentinel(make_manager: Any, redis_factory: Any, tmp_path: Path) -> None:
    from tests.conftest import free_port

    master = redis_factory()
    port = free_port()
    conf = tmp_path / "sentinel.conf"  # redis-sentinel rewrites its config file: one of its own
    conf.write_text(f"port {port}\nbind 127.0.0.1\nsentinel monitor mymaster 127.0.0.1 {master.port} 1\n")
    proc = subprocess.Popen(["redis-sentinel", str(conf)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        guard = redis.Redis(port=port)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                if guard.execute_command("SENTINEL", "GET-MASTER-ADDR-BY-NAME", "mymaster"):
                    break
            except redis.ConnectionError:
                pass
            time.sleep(0.05)
        sentinel = {"service": "mymaster", "addresses": [f"127.0.0.1:{port}"]}
        manager = _one_region(make_manager, "redis://mymaster/0", OPTIONS={"sentinel": sentinel})
        computed: list[int] = []

        @manager.region("r")
        def f(x: int) -> int:
            computed.append(x)
            return x

        assert [f(1), f(1)] == [1, 1] and computed == [1]
        assert _raw(master.url).exists(f.cache_key(1)) == 1  # on the master the sentinel named
        assert manager["r"].stats()["errors"] == 0
    finally:
        proc.kill()
        proc.wait(5)


def test_beaker_ext_redis_settings_make_a_redis_region(redis_server: str) -> None:
    manager = regions.CacheManager({
        "cache.regions": "shared",
        "cache.shared.type": "ext:redis",
        "cache.shared.url": redis_server,
        "cache.shared.expire": 60,
    })
    try:
        assert (manager["shared"].backend, manager["shared"].timeout) == ("redis", 60)

        @manager.region("shared")
        def f(x: int) -> int:
            return x

        assert f(3) == 3 and f(3) == 3 and manager["shared"].stats()["hits"] == 1
    finally:
        manager.close()


# TLS (rediss://) -------------------------------------------------------------------------------


def _certificates(folder: Path) -> dict[str, str]:
    """A throw-away CA and a server certificate for 127.0.0.1 signed by it (openssl CLI)."""
    def run(*args: str) -> None:
        subprocess.run(["openssl", *args], check=True, capture_output=True, cwd=folder)

    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    run("req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.pem", "-days", "1",
        "-subj", "/CN=regions-test-ca")
    run("req", *ec, "-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=127.0.0.1")
    (folder / "san.ext").write_text("subjectAltName=IP:127.0.0.1\n")
    run("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
        "-out", "server.pem", "-days", "1", "-extfile", "san.ext")
    found = {name: str(folder / f"{name}.pem") for name in ("ca", "server")}
    return {**found, "key": str(folder / "server.key")}


def test_a_region_over_tls(make_manager: Any, redis_factory: Any, tmp_path: Path) -> None:
    from tests.conftest import free_port

    if subprocess.run(["which", "openssl"], capture_output=True).returncode != 0:
        pytest.skip("the openssl command makes the test's certificates: apt-get install -y openssl")
    certs = _certificates(tmp_path)
    tls_port = free_port()
    redis_factory(extra_args=("--tls-port", str(tls_port), "--tls-cert-file", certs["server"],
                              "--tls-key-file", certs["key"], "--tls-ca-cert-file", certs["ca"],
                              "--tls-auth-clients", "no"))
    url = f"rediss://127.0.0.1:{tls_port}/0"
    manager = _one_region(make_manager, url, OPTIONS={"ssl_ca_certs": certs["ca"]})
    computed: list[int] = []

    @manager.region("r")
    def f(x: int) -> int:
        computed.append(x)
        return x

    assert [f(1), f(1)] == [1, 1] and computed == [1]
    assert manager["r"].stats()["errors"] == 0
    # a client that does not trust the CA gets no answer: a miss, never an exception
    untrusting = _one_region(make_manager, url, OPTIONS={"ssl_ca_certs": str(tmp_path / "server.pem")})

    @untrusting.region("r")
    def g(x: int) -> int:
        return x + 1

    assert g(1) == 2
    assert untrusting["r"].stats()["hits"] == 0 and untrusting["r"].store.breaker.down


def test_a_server_killed_and_restarted_empty_is_used_again(make_manager: Any, redis_factory: Any) -> None:
    """SIGKILL, then a new server on the same port with nothing in it: misses while it is gone,
    then the region stores and hits again (its Lua scripts are loaded anew: a lease and a lock
    release run on the new server)."""
    server = redis_factory()
    manager = _one_region(make_manager, server.url,
                          OPTIONS={"socket_timeout": 0.2, "connect_timeout": 0.2, "retry_interval": 0.1})
    computed: list[int] = []

    @manager.region("r")
    def f(x: int) -> int:
        computed.append(x)
        return x

    assert f(1) == f(1) == 1 and computed == [1]
    server.proc.send_signal(signal.SIGKILL)
    server.proc.wait(5)
    assert [f(1), f(1)] == [1, 1] and computed == [1, 1, 1]  # computed each time, no exception
    redis_factory(port=server.port)
    store = manager["r"].store
    deadline = time.monotonic() + 20
    while store.breaker.down and time.monotonic() < deadline:
        time.sleep(0.05)
    assert store.breaker.down is False
    computed.clear()
    assert [f(1), f(1), f(2), f(2)] == [1, 1, 2, 2] and computed == [1, 2]
    assert manager["r"].stats()["voided"] == 0


@pytest.mark.parametrize("backend", ["memory", "tiered"])
def test_a_synced_region_over_redis_sees_another_process_invalidate(
    redis_server: str, tmp_path: Path, backend: str
) -> None:
    """The log on a Redis stream carries an invalidation between real processes."""
    data = str(tmp_path / "data.txt")
    w.write_version(data, 1)
    link = {"sync_with": "r"} if backend == "memory" else {"over": "r"}
    local = {"BACKEND": backend, "TIMEOUT": 300, "OPTIONS": {**link, "sync_interval": 0.05}}
    shared = {"BACKEND": "redis", "LOCATION": redis_server, "TIMEOUT": 300}
    settings = {"config": {"r": shared, "local": local},
                "prefix": "s" + uuid.uuid4().hex[:8], "secret": "s-" + uuid.uuid4().hex}
    manager = rw.build(settings)
    try:
        value = rw.make_reader(manager, data, region="local")
        assert value(1) == value(1) == (1, 1)
        w.write_version(data, 2)
        proc = multiprocessing.get_context("spawn").Process(
            target=rw.invalidate_once, args=(settings, data, 1, "local")
        )
        proc.start()
        proc.join(60)
        assert proc.exitcode == 0
        deadline = time.monotonic() + 20
        while value(1) != (1, 2) and time.monotonic() < deadline:
            time.sleep(0.02)
        assert value(1) == (1, 2)
        stats = manager["local"].stats()
        assert stats["received_invalidations"] >= 1 and stats["sync_failures"] == 0, stats
    finally:
        manager.close()


def test_a_busy_pool_is_not_a_server_failure(make_manager: Any, redis_server: str,
                                             caplog: pytest.LogCaptureFixture) -> None:
    manager = _one_region(make_manager, redis_server, OPTIONS={"max_connections": 1, "connect_timeout": 0.1})
    store = manager["r"].store

    @manager.region("r")
    def f(x: int) -> int:
        return x

    assert f(1) == 1
    pool = store.client.connection_pool
    held = pool.get_connection()  # the pool's only connection, busy elsewhere
    try:
        with caplog.at_level(logging.WARNING, logger="regions"):
            assert f(1) == 1  # computed: no connection came free in time
        assert store.breaker.down is False
        assert any("max_connections" in r.getMessage() for r in caplog.records)
    finally:
        pool.release(held)
    hits = manager["r"].stats()["hits"]
    assert f(1) == 1 and manager["r"].stats()["hits"] == hits + 1
