"""``django_regions.cache.RegionCache`` where Django's own suite does not look: what ``clear()``
leaves, request regions, copies, planted entries, a hung server, ``incr`` from several processes,
``incr`` in a child forked while a parent thread increments, a key's lock held past
``lock_timeout``, sessions, and the E020 check. Django's suite itself: test_django_conformance_*.py."""

from __future__ import annotations

import json
import multiprocessing
import os
import pickle
import signal
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from django.core import checks
from django.core.cache import caches
from django.core.cache.backends.base import InvalidCacheBackendError
from django.test import override_settings
from pymemcache.client.base import Client

import regions
from django_regions.cache import RegionCache
from regions.backends.file.entry_format import MAGIC
from regions.errors import LockTimeout
from tests.conftest import MemcachedServer
from tests.faults.conftest import all_threads_stopped
from tests.faults.test_fork_and_pool import read_child

BACKEND = "django_regions.cache.RegionCache"


def aliases(**locations: str) -> dict[str, dict[str, Any]]:
    return {alias: {"BACKEND": BACKEND, "LOCATION": where} for alias, where in locations.items()}


def raw_client(address: str) -> Client:
    host, port = address.rsplit(":", 1)
    return Client((host, int(port)), connect_timeout=2, timeout=2)


def test_clear_drops_its_own_prefix_only(memcached_server: str) -> None:
    """``clear()`` never flushes the server: another prefix, the region's function entries and a
    foreign key on the same memcached all stay."""
    caches_setting = aliases(default="functions", other="functions")
    caches_setting["other"]["KEY_PREFIX"] = "other"
    foreign = f"foreign-{os.getpid()}"
    raw_client(memcached_server).set(foreign, b"kept", noreply=False)
    calls: list[int] = []

    @regions.region("functions")
    def square(x: int) -> int:
        calls.append(x)
        return x * x

    with override_settings(CACHES=caches_setting):
        default, other = caches["default"], caches["other"]
        default.set("k", "mine")
        other.set("k", "theirs")
        assert square(3) == 9
        default.clear()
        assert default.get("k") is None
        assert other.get("k") == "theirs"
        assert square(3) == 9 and calls == [3], "clear() dropped the region's function entries"
        assert raw_client(memcached_server).get(foreign) == b"kept"


@pytest.mark.parametrize("region", ["functions", "files", "request"])
def test_values_are_copies_and_stats_count(region: str) -> None:
    """A value mutated after ``set`` is not changed in the cache (as Django's locmem), on
    in-process regions too; ``get`` counts hits and misses in the region's stats."""
    with override_settings(CACHES=aliases(default=region)), regions.request_scope():
        cache = caches["default"]
        stats = regions.get_manager()[region].counts
        hits, misses = stats.hits, stats.misses
        value = {"items": [1, 2]}
        cache.set("v", value)
        value["items"].append(3)
        assert cache.get("v") == {"items": [1, 2]}
        assert cache.get("absent") is None
        assert (stats.hits - hits, stats.misses - misses) == (1, 1)


def test_request_region_lives_one_scope() -> None:
    """Over a request region: entries live in their request scope; outside one nothing is kept."""
    with override_settings(CACHES=aliases(default="request")):
        cache = caches["default"]
        with regions.request_scope():
            cache.set("k", 1)
            assert cache.get("k") == 1
            assert cache.incr("k") == 2
        with regions.request_scope():
            assert cache.get("k") is None
        cache.set("k", 1)
        assert cache.get("k") is None
        assert cache.add("k", 1) is True  # added, and gone with the (absent) scope


@pytest.mark.parametrize("region", ["functions", "files"])
def test_planted_entry_is_a_miss_and_runs_no_code(region: str, memcached_server: str, tmp_path: Path) -> None:
    """A pickle planted under a Django key (memcached: the wire key; files: the entry file) is a
    miss counted as rejected, never unpickled, and replaced by the next ``set``."""
    marker = tmp_path / "pwned"

    class Exploit:
        def __reduce__(self) -> tuple[Any, ...]:
            return (os.system, (f"touch {marker}",))

    with override_settings(CACHES=aliases(default=region)):
        cache = caches["default"]
        assert isinstance(cache, RegionCache)
        cache.set("planted", "genuine")
        ns = cache._binding()[2]
        key = cache.make_and_validate_key("planted")
        forged = pickle.dumps((time.time(), None, Exploit()))
        if region == "functions":
            raw_client(memcached_server).set(str(ns.wire_key(key)), forged, noreply=False)
        else:
            path = Path(ns._path(key))  # type: ignore[attr-defined]
            path.write_bytes(MAGIC + forged)
        rejected = cache.region.counts.rejected
        assert cache.get("planted", "missed") == "missed"
        assert not marker.exists(), "a planted entry ran code"
        assert cache.region.counts.rejected == rejected + 1
        assert cache.add("planted", "again") is True
        assert cache.get("planted") == "again"


def test_hung_server_costs_one_timeout(memcached_factory: Any) -> None:
    """memcached stopped (SIGSTOP): the first call waits one timeout; then every operation answers
    at once with the failure policy (default, False, ValueError as for a missing key), no exception
    of the backend reaches the caller; hits resume once the server answers."""
    server: MemcachedServer = memcached_factory()
    config = {"hung": {"BACKEND": "memcached", "LOCATION": server.address,
                       "OPTIONS": {"timeout": 0.5, "retry_interval": 0.2}}}
    with override_settings(CACHE_REGIONS=config, CACHES=aliases(default="hung")):
        cache = caches["default"]
        cache.set("n", 1)
        os.kill(server.proc.pid, signal.SIGSTOP)
        while not all_threads_stopped(server.proc.pid):  # delivered asynchronously
            time.sleep(0.001)
        try:
            start = time.monotonic()
            assert cache.get("n", "default") == "default"
            first = time.monotonic() - start
            start = time.monotonic()
            assert cache.get("n", "default") == "default"
            cache.set("n", 5)
            assert cache.add("m", 1) is False
            assert cache.delete("n") is False
            assert cache.touch("n") is False
            assert cache.has_key("n") is False
            assert cache.get_many(["n", "m"]) == {}
            assert cache.set_many({"a": 1}) == ["a"]
            with pytest.raises(ValueError):
                cache.incr("n")
            cache.clear()
            rest = time.monotonic() - start
        finally:
            os.kill(server.proc.pid, signal.SIGCONT)
        assert first < 1.5 and rest < 1.0, (first, rest)
        deadline = time.monotonic() + 5
        while cache.get("fresh") is None and time.monotonic() < deadline:
            cache.set("fresh", 1)
            time.sleep(0.05)
        assert cache.get("fresh") == 1, "hits did not resume within 5 s"
        assert cache.get("n") is None, "the delete made during the outage did not hold"


def test_a_lock_the_hung_server_never_gave_is_not_kept(memcached_factory: Any) -> None:
    """The first call after memcached hangs is an ``add``: its cross-process lock times out. The
    key's in-process lock must not stay held: the next ``add``/``incr`` of that key answers."""
    import threading

    server: MemcachedServer = memcached_factory()
    config = {"hung": {"BACKEND": "memcached", "LOCATION": server.address,
                       "OPTIONS": {"timeout": 0.3, "retry_interval": 0.2, "lock_timeout": 0.5}}}
    with override_settings(CACHE_REGIONS=config, CACHES=aliases(default="hung")):
        cache = caches["default"]
        cache.set("warm", 1)
        os.kill(server.proc.pid, signal.SIGSTOP)
        while not all_threads_stopped(server.proc.pid):
            time.sleep(0.001)
        try:
            assert cache.add("k", 1) is False
            answered: list[bool] = []
            second = threading.Thread(target=lambda: answered.append(cache.add("k", 2)), daemon=True)
            second.start()
            second.join(10)
            assert answered == [False], "the second add of the key never returned: its lock was kept"
        finally:
            os.kill(server.proc.pid, signal.SIGCONT)


def _incr_many(address: str, prefix: str, times: int, ready: Any) -> None:
    import django
    from django.conf import settings

    settings.configure(
        CACHES={"default": {"BACKEND": BACKEND, "LOCATION": "counters"}}, USE_TZ=True
    )
    django.setup()
    regions.configure({"counters": {"BACKEND": "memcached", "LOCATION": address}}, key_prefix=prefix)
    from django.core.cache import cache

    ready.wait(60)  # every process has set Django up: the increments overlap
    for _ in range(times):
        cache.incr("hits")


def test_incr_is_atomic_across_processes(memcached_server: str, region_prefix: str) -> None:
    """Three spawned processes increment one counter 150 times each, on a memcached region without
    ``distributed_lock``: no increment is lost (each runs under the key's memcached add lock)."""
    regions.configure({"counters": {"BACKEND": "memcached", "LOCATION": memcached_server}},
                      key_prefix=region_prefix)
    cache = RegionCache("counters", {})
    cache.set("hits", 0)
    ctx = multiprocessing.get_context("spawn")
    ready = ctx.Barrier(3)  # passed once all three have imported and set up Django
    procs = [ctx.Process(target=_incr_many, args=(memcached_server, region_prefix, 150, ready))
             for _ in range(3)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    assert cache.get("hits") == 450


#: Holds the thread named "slow-incr" inside its ``incr`` (so inside the key's lock) until released.
INSIDE_INCR, RELEASE_INCR = threading.Event(), threading.Event()


class SlowCount(int):
    """A stored count whose ``+`` (run by ``incr`` under the key's lock) holds the "slow-incr" thread."""

    def __add__(self, other: Any) -> int:
        if threading.current_thread().name == "slow-incr":
            INSIDE_INCR.set()
            assert RELEASE_INCR.wait(30)
        return int(self) + other


def start_slow_incr(cache: Any, key: str) -> threading.Thread:
    """A thread inside ``cache.incr(key)``, holding the key's lock until ``RELEASE_INCR`` is set."""
    INSIDE_INCR.clear()
    RELEASE_INCR.clear()
    cache.set(key, SlowCount(5))
    slow = threading.Thread(target=cache.incr, args=(key,), name="slow-incr", daemon=True)
    slow.start()
    assert INSIDE_INCR.wait(10)
    return slow


@pytest.mark.skipif(not hasattr(os, "fork"), reason="os.fork")
@pytest.mark.parametrize(("region", "expected"), [("local", 15), ("functions", 16)])
def test_incr_in_a_child_forked_while_a_parent_thread_increments(
    region: str, expected: int, settings: Any, cache_regions: dict[str, Any]
) -> None:
    """A parent thread is inside ``incr("n")`` (so it holds the key's lock) when the process forks.
    The child's ``incr("n", 10)`` answers: the lock it inherited belonged to a thread the child does
    not have, and it waited for it forever. On an in-process region the child increments its own copy
    (5 + 10); on memcached it waits for the parent's increment (its cross-process lock), then adds."""
    settings.CACHE_REGIONS = {**cache_regions, "local": {"BACKEND": "memory"}}
    with override_settings(CACHES=aliases(default=region)):
        cache = caches["default"]
        slow = start_slow_incr(cache, "n")
        read_end, write_end = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child: report, and never return into pytest
            code = 1
            try:
                os.close(read_end)
                start = time.monotonic()
                value = cache.incr("n", 10)
                os.write(write_end, json.dumps({"value": value, "took": time.monotonic() - start}).encode())
                code = 0
            except BaseException as exc:
                os.write(write_end, json.dumps({"error": repr(exc)}).encode())
            finally:
                os._exit(code)
        os.close(write_end)
        time.sleep(0.2)
        RELEASE_INCR.set()  # the parent's increment ends; a child still waiting on memcached goes on
        raw = read_child(read_end, pid, 15)
        slow.join(10)
        assert raw, "the child's incr did not return within 15 s: it waited for the parent's thread"
        report = json.loads(raw)
        assert "error" not in report, report["error"]
        print(f"\n{region}: the child's incr took {report['took']:.3f} s")
        assert report["value"] == expected
        assert cache.get("n") == (6 if region == "local" else 16)


def test_a_key_lock_held_past_lock_timeout_raises(settings: Any, cache_regions: dict[str, Any]) -> None:
    """Another thread of this process keeps the key's lock (inside ``incr``): a second ``incr`` waits
    ``lock_timeout`` and then raises :class:`LockTimeout` naming the region, the key and the timeout;
    it neither waits forever nor increments without the lock (a lost increment). Not a ValueError: a
    caller's ``except ValueError: cache.set(key, 1)`` would reset the counter."""
    local = {"BACKEND": "memory", "OPTIONS": {"lock_timeout": 0.5}}
    settings.CACHE_REGIONS = {**cache_regions, "local": local}
    with override_settings(CACHES=aliases(default="local")):
        cache = caches["default"]
        slow = start_slow_incr(cache, "n")
        outcome: list[Any] = []

        def second() -> None:
            start = time.monotonic()
            try:
                outcome.append(cache.incr("n", 10))
            except Exception as exc:
                outcome.append(exc)
            outcome.append(time.monotonic() - start)

        waiter = threading.Thread(target=second, daemon=True)
        waiter.start()
        waiter.join(10)
        RELEASE_INCR.set()
        slow.join(10)
        assert outcome, "the second incr did not return within 10 s (lock_timeout 0.5 s)"
        error, took = outcome
        assert isinstance(error, LockTimeout) and not isinstance(error, ValueError), error
        message = str(error)
        assert "'local'" in message and repr(cache.make_key("n")) in message and "0.5 s" in message, message
        assert took < 5, took
        assert cache.get("n") == 6, "the second incr changed the count although it raised"
        assert cache.region.stats()["lock_timeouts"] == 1


def test_sessions_over_a_region(client: Any, django_user_model: Any) -> None:
    """``django.contrib.sessions.backends.cache`` on RegionCache: a login holds across requests."""
    user = django_user_model.objects.create_user("ann", password="pw")
    with override_settings(
        CACHES=aliases(default="functions"), SESSION_ENGINE="django.contrib.sessions.backends.cache"
    ):
        client.force_login(user)
        key = client.session.session_key
        assert caches["default"].get(f"django.contrib.sessions.cache{key}")["_auth_user_id"] == str(user.pk)
        response = client.get("/regions/")  # staff only: a logged-in non-staff user is refused
        assert response.status_code in (302, 403)
        assert client.session.session_key == key


def test_unknown_location_is_reported() -> None:
    """E020 names the alias and lists the regions; the first use fails with the same names."""
    with override_settings(CACHES={**aliases(default="functions", pages="nowhere")}):
        found = [m for m in checks.run_checks() if m.id == "django_regions.E020"]
        assert len(found) == 1 and "'pages'" in found[0].msg and "'nowhere'" in found[0].msg
        assert "'functions'" in str(found[0].hint)
        with pytest.raises(InvalidCacheBackendError, match="nowhere.*functions"):
            caches["pages"].get("k")


@pytest.mark.parametrize("region", ["functions", "local"])
def test_async_api(region: str, settings: Any, cache_regions: dict[str, Any]) -> None:
    """Django's ``a*`` methods (run off the event loop by BaseCache) on a network and an in-process
    region: the same entries as the sync API."""
    import asyncio

    settings.CACHE_REGIONS = {**cache_regions, "local": {"BACKEND": "memory"}}

    async def main() -> None:
        cache = caches["default"]
        await cache.aset("a", {"n": 1})
        assert await cache.aget("a") == {"n": 1}
        assert await cache.aadd("a", 2) is False
        assert await cache.aadd("c", 1) is True
        assert await cache.aincr("c", 5) == 6
        assert await cache.aget_many(["a", "c", "z"]) == {"a": {"n": 1}, "c": 6}
        assert await cache.adelete("a") is True
        assert await cache.ahas_key("a") is False
        assert await cache.aget_or_set("d", lambda: 4) == 4
        await cache.aclear()
        assert await cache.aget("c") is None
        assert cache.get("d") is None

    with override_settings(CACHES=aliases(default=region)):
        asyncio.run(main())


def test_async_calls_run_on_the_regions_threads(settings: Any, cache_regions: dict[str, Any]) -> None:
    """``aset`` and friends run on the region's I/O threads (several at once), not on the single
    thread Django's defaults use for every request's cache calls; ``aget`` of a region that reads
    on the event loop (memcached, Redis: ``AsyncEntries``) runs on the loop, with no thread at all,
    and so does every call of an in-process region. Seen through ``KEY_FUNCTION``, which runs
    wherever the call runs."""
    import asyncio
    import threading

    settings.CACHE_REGIONS = {**cache_regions, "local": {"BACKEND": "memory"}}
    seen: dict[str, set[str]] = {"functions": set(), "local": set(), "functions get": set()}
    reading = {"get": False}

    def key_function(alias: str) -> Any:
        def make(key: str, prefix: str, version: int) -> str:
            seen[alias + (" get" if reading["get"] and alias == "functions" else "")].add(
                threading.current_thread().name)
            return f"{prefix}:{version}:{key}"
        return make

    caches_setting = aliases(default="functions", local="local")
    caches_setting["default"]["KEY_FUNCTION"] = key_function("functions")
    caches_setting["local"]["KEY_FUNCTION"] = key_function("local")

    async def main() -> None:
        network, local = caches["default"], caches["local"]
        await asyncio.gather(*(network.aset(f"k{i}", i) for i in range(16)))
        reading["get"] = True
        # version=1 (the default VERSION, so the same entries): RegionCache remembers the keys aset
        # made per (key, version asked), so these gets make theirs, where they run
        assert await asyncio.gather(*(network.aget(f"k{i}", version=1) for i in range(16))) == list(range(16))
        reading["get"] = False
        await local.aset("k", 1)
        assert await local.aget("k") == 1
        seen["loop"] = {threading.current_thread().name}

    with override_settings(CACHES=caches_setting):
        asyncio.run(main())
    assert seen["functions"] and all(n.startswith("regions-functions") for n in seen["functions"]), seen
    assert seen["local"] == seen["loop"], seen
    assert seen["functions get"] == seen["loop"], seen


COUNTED_KEYS: list[str] = []


def counting_key_func(key: str, key_prefix: str, version: int) -> str:
    """Django's default key function, counting its calls (KEY_FUNCTION of the memo test)."""
    COUNTED_KEYS.append(key)
    return f"{key_prefix}:{version}:{key}"


def test_a_made_key_is_remembered_and_a_warning_key_warns_every_time(cache_regions: dict[str, Any]) -> None:
    """A text key is made once per version (KEY_FUNCTION not called again on a hit); a key that
    draws Django's CacheKeyWarning is never remembered, so it warns on every use, as on Django's."""
    from django.core.cache.backends.base import CacheKeyWarning

    setting = aliases(default="functions")
    setting["default"]["KEY_FUNCTION"] = counting_key_func
    with override_settings(CACHES=setting):
        cache = caches["default"]
        COUNTED_KEYS.clear()
        cache.set("k", 1)
        assert [cache.get("k") for _ in range(3)] == [1, 1, 1]
        assert cache.get("k", version=2) is None
        assert COUNTED_KEYS == ["k", "k"], "the key function ran again for a key already made"
        for _ in range(2):
            with pytest.warns(CacheKeyWarning):
                cache.set("has space", 2)
            with pytest.warns(CacheKeyWarning):
                assert cache.get("has space") == 2
