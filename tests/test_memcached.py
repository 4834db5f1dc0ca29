"""memcached backend against real servers: round trips, lifetimes, clear(), several servers, failures."""

from __future__ import annotations

import socket
import time
import uuid

import pytest

import regions

MISSING = object()
DAY = 24 * 3600


def meta_ttl(address: str, key: str) -> int | None:
    """Remaining TTL of ``key`` on the server (-1: never expires), None when absent (meta get ``t``)."""
    host, port = address.rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=2) as sock:
        sock.sendall(f"mg {key} t\r\n".encode())
        reply = sock.recv(1024).decode()
    if reply.startswith("EN"):
        return None
    assert reply.startswith("HD"), reply
    flags = reply.split()[1:]
    return int(next(f[1:] for f in flags if f.startswith("t")))


def delta(before: dict, after: dict, *names: str) -> dict:
    return {n: int(after[n]) - int(before[n]) for n in names}


@pytest.fixture
def quiet_config(region_config):
    """memcached region whose generation counters are read once (no re-reads during a test)."""

    def make(**settings):
        options = {"sync_interval": 3600, **settings.pop("OPTIONS", {})}
        return region_config("memcached", OPTIONS=options, **settings)

    return make


def test_one_get_per_hit_and_a_leased_set_per_miss(quiet_config, make_manager, memcached_stats):
    manager = make_manager({"mc": quiet_config()})
    calls = []

    @manager.region("mc")
    def f(x):
        calls.append(x)
        return {"x": x}

    f(0)  # first use reads (and creates) the generation counters
    before = memcached_stats()
    assert f(1) == {"x": 1}
    after_miss = memcached_stats()
    assert f(1) == {"x": 1}
    after_hit = memcached_stats()
    assert calls == [0, 1]

    miss = delta(before, after_miss, "cmd_get", "cmd_set", "cmd_touch", "delete_hits", "delete_misses")
    hit = delta(after_miss, after_hit, "cmd_get", "cmd_set", "cmd_touch", "delete_hits", "delete_misses")
    assert hit == {"cmd_get": 1, "cmd_set": 0, "cmd_touch": 0, "delete_hits": 0, "delete_misses": 0}, hit
    # a miss: the lookup, the lease (add of a placeholder, gets of its cas unique), the cas store
    assert miss["cmd_set"] == 2, miss  # memcached counts add and cas as sets
    assert miss["cmd_get"] <= 3, miss  # lookup, gets, and at most one re-check under the creation lock
    assert miss["delete_hits"] + miss["delete_misses"] == 0, miss

    region = manager["mc"]
    region.set("direct", 1)
    before = memcached_stats()
    for _ in range(10):
        assert region.get("direct") == 1
    assert delta(before, memcached_stats(), "cmd_get", "cmd_set") == {"cmd_get": 10, "cmd_set": 0}


def test_timeout_over_thirty_days_still_caches(quiet_config, make_manager, memcached_server):
    manager = make_manager({"mc": quiet_config(TIMEOUT=40 * DAY)})
    calls = []

    @manager.region("mc")
    def f(x):
        calls.append(x)
        return x

    assert f(1) == f(1) == 1
    assert calls == [1]
    ttl = meta_ttl(memcached_server, f.cache_key(1))
    assert ttl is not None and 39 * DAY < ttl <= 41 * DAY, ttl

    region = manager["mc"]
    region.set("k", "v", timeout=45 * DAY)
    assert region.get("k") == "v"


def test_timeout_none_never_expires_on_the_server(quiet_config, make_manager, memcached_server):
    manager = make_manager({"mc": quiet_config(TIMEOUT=None), "short": quiet_config(TIMEOUT=60)})

    @manager.region("mc")
    def forever(x):
        return x

    @manager.region("short")
    def minute(x):
        return x

    forever(1), minute(1)
    assert meta_ttl(memcached_server, forever.cache_key(1)) == -1
    ttl = meta_ttl(memcached_server, minute.cache_key(1))
    assert ttl is not None and 0 < ttl <= 60 + 60, ttl  # timeout plus at most the stale window


def test_clear_never_flushes_the_server(quiet_config, make_manager, memcached_stats, memcached_server):
    tag = uuid.uuid4().hex[:8]
    a, b = f"a-{tag}", f"b-{tag}"
    manager = make_manager({a: quiet_config(), b: quiet_config()})
    calls = []

    @manager.region(a)
    def fa(x):
        calls.append(("a", x))
        return x

    @manager.region(b)
    def fb(x):
        calls.append(("b", x))
        return x

    fa(-1)
    time.sleep(0.01)  # see test_regions_on_one_server_never_share_entries for what happens otherwise
    fb(-1)
    calls.clear()

    # Somebody else's key on the same server, outside regions altogether.
    from pymemcache.client.base import Client

    host, port = memcached_server.rsplit(":", 1)
    raw = Client((host, int(port)))
    assert raw.set("foreign-key", b"keep me", noreply=False)  # stored before the regions calls

    for x in range(5):
        fa(x), fb(x)
    manager[a].set("k", "a")
    manager[b].set("k", "b")
    before = memcached_stats()
    manager[a].clear()
    after = memcached_stats()
    assert delta(before, after, "cmd_flush") == {"cmd_flush": 0}

    assert manager[a].get("k", MISSING) is MISSING
    assert manager[b].get("k") == "b"
    for x in range(5):
        fa(x), fb(x)
    assert calls.count(("a", 0)) == 2 and calls.count(("b", 0)) == 1
    assert len(calls) == 15
    assert raw.get("foreign-key") == b"keep me"
    raw.close()


def test_regions_on_one_server_never_share_entries(region_config, make_manager):
    """Two regions of one manager on one server: however often one is cleared, keys never meet."""
    tag = uuid.uuid4().hex[:8]
    name_a, name_b = f"a-{tag}", f"b-{tag}"
    manager = make_manager({name_a: region_config("memcached"), name_b: region_config("memcached")})
    a, b = manager[name_a], manager[name_b]
    a.set("k", "a")
    time.sleep(0.005)
    b.set("k", "b")
    assert a.get("k") == "a"
    for i in range(300):
        a.clear()
        a.set("k", "a")
        assert b.get("k") == "b", f"after {i + 1} clear(s) of {name_a!r}, region {name_b!r} reads its entry"


def test_clear_spares_the_same_region_under_another_key_prefix(region_config, make_manager):
    """KEY_PREFIX separates applications sharing a server: one app's clear() is not the other's."""
    tag = uuid.uuid4().hex[:8]
    conf = region_config("memcached", OPTIONS={"sync_interval": 0})
    one = make_manager({"shared": conf}, key_prefix=f"app-one-{tag}")
    two = make_manager({"shared": dict(conf)}, key_prefix=f"app-two-{tag}")
    one["shared"].set("k", 1)
    two["shared"].set("k", 2)
    one["shared"].clear()
    assert one["shared"].get("k", MISSING) is MISSING
    assert two["shared"].get("k") == 2


def test_clear_reaches_other_processes_after_sync_interval(region_config, make_manager):
    conf = region_config("memcached", OPTIONS={"sync_interval": 0.2})
    writer = make_manager({"mc": conf}, key_prefix="sync-test-" + str(time.time_ns()))
    reader = make_manager({"mc": dict(conf)}, key_prefix=writer["mc"].key_prefix)
    writer["mc"].set("k", 1)
    assert reader["mc"].get("k") == 1
    writer["mc"].clear()
    assert writer["mc"].get("k", MISSING) is MISSING  # own clear: at once
    time.sleep(0.3)
    assert reader["mc"].get("k", MISSING) is MISSING  # another process: within sync_interval


def test_two_servers(region_config, make_manager, memcached_server, memcached_factory, memcached_stats):
    second = memcached_factory()
    manager = make_manager(
        {"mc": region_config("memcached", LOCATION=[memcached_server, second.address],
                             OPTIONS={"connect_timeout": 0.5, "timeout": 0.5})}
    )
    region = manager["mc"]
    assert region.ping() is True
    calls = []

    @manager.region("mc")
    def f(x):
        calls.append(x)
        return x * 3

    before = [memcached_stats(memcached_server), memcached_stats(second.address)]
    assert [f(x) for x in range(40)] == [x * 3 for x in range(40)]
    assert [f(x) for x in range(40)] == [x * 3 for x in range(40)]
    after = [memcached_stats(memcached_server), memcached_stats(second.address)]
    assert calls == list(range(40))
    sets = [delta(b, a, "cmd_set")["cmd_set"] for b, a in zip(before, after, strict=True)]
    hits = [delta(b, a, "get_hits")["get_hits"] for b, a in zip(before, after, strict=True)]
    assert all(s > 0 for s in sets), f"keys not spread over both servers: {sets}"
    assert sum(hits) >= 40

    # One server goes away: calls still answer with the function's result.
    second.stop()
    calls.clear()
    start = time.monotonic()
    assert [f(x) for x in range(40)] == [x * 3 for x in range(40)]
    assert time.monotonic() - start < 10
    stats = region.stats()
    assert stats["errors"] + stats["unavailable"] > 0  # failed, or skipped once marked down
    assert region.ping() is False


@pytest.mark.parametrize("location", ["single", "list"])
def test_down_server_never_fails_the_call(location, region_config, make_manager, dead_address):
    where = dead_address if location == "single" else [dead_address]
    manager = make_manager(
        {"mc": region_config("memcached", LOCATION=where, OPTIONS={"connect_timeout": 0.5, "timeout": 0.5})}
    )
    region = manager["mc"]
    calls = []

    @manager.region("mc")
    def f(x):
        calls.append(x)
        return [x]

    start = time.monotonic()
    assert f(1) == [1]
    assert f(1) == [1]
    assert calls == [1, 1]  # nothing could be cached
    assert region.stats()["errors"] == 1  # the first failure marks the server down ...
    assert region.stats()["unavailable"] > 0  # ... and the next calls skip it
    skipped = region.stats()["unavailable"]
    region.set("k", 1)
    assert region.get("k", MISSING) is MISSING
    assert region.delete("k") is False
    assert region.clear() is False
    assert region.get_or_create("k", lambda: "made") == "made"
    assert f.invalidate(1) is False
    assert f.refresh(1) == [1]
    assert f.invalidate_all() is False
    assert f.cache_key(1) is None
    assert region.stats()["unavailable"] > skipped
    assert region.ping() is False
    assert time.monotonic() - start < 10


def test_raise_errors_propagates(region_config, make_manager, dead_address):
    manager = make_manager(
        {"mc": region_config("memcached", LOCATION=dead_address,
                             OPTIONS={"raise_errors": True, "connect_timeout": 0.5, "timeout": 0.5})}
    )
    calls = []

    @manager.region("mc")
    def f(x):
        calls.append(x)
        return x

    with pytest.raises(Exception) as info:
        f(1)
    assert not isinstance(info.value, regions.UncacheableArgument)
    with pytest.raises(Exception):  # noqa: B017 - any backend error type is fine, it just must surface
        manager["mc"].get("k")
    stats = manager["mc"].stats()
    assert stats["errors"] == 1 and stats["unavailable"] >= 1


@pytest.mark.parametrize(
    "key",
    ["k" * 300, " " * 116, "鍵" * 30, "tab\tnewline\n", "x" * 1000 + "鍵 "],
    ids=["300", "spaces", "cjk", "ws", "mix"],
)
def test_awkward_keys_cache_on_the_server(key, quiet_config, make_manager, memcached_stats):
    manager = make_manager({"mc": quiet_config()})
    calls = []

    @manager.region("mc")
    def f(k):
        calls.append(k)
        return len(k)

    f("warm-up")
    assert f(key) == len(key)
    before = memcached_stats()
    assert f(key) == len(key)  # served by the server (the miss's lease reads the key too)
    after = memcached_stats()
    assert calls == ["warm-up", key]
    assert delta(before, after, "get_hits")["get_hits"] == 1
    assert manager["mc"].stats()["errors"] == 0

    region = manager["mc"]
    region.set(key, "value")
    assert region.get(key) == "value"
    assert region.get(key + "!", MISSING) is MISSING


def test_retired_option_names_its_replacement(dead_address):
    with pytest.raises(regions.ConfigurationError, match="'dead_timeout' is gone.*retry_interval") as info:
        regions.CacheManager({"mc": {"BACKEND": "memcached", "LOCATION": dead_address,
                                     "OPTIONS": {"dead_timeout": 3}}})
    assert info.value.region == "mc" and info.value.option == "OPTIONS.dead_timeout"
