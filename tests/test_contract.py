"""One contract, every backend.

The same behaviour is required of memcached, file, request (inside ``regions.request_scope()``)
and memory regions; each test here runs once per backend against the real thing.
"""

from __future__ import annotations

import asyncio
import inspect
import os
import time

import pytest

import regions

BACKENDS = ("memcached", "file", "request", "memory")
MISSING = object()


@pytest.fixture(params=BACKENDS)
def backend(request):
    return request.param


@pytest.fixture
def cache(backend, region_config, make_manager):
    """A manager whose regions all use ``backend``:

    main (default TIMEOUT), other (same memcached server as main; file regions must each have their
    own folder, so a sibling one), short (TIMEOUT 1), forever (TIMEOUT None).
    For the request backend the whole test runs inside ``regions.request_scope()``.
    """
    main = region_config(backend, TIMEOUT=300)
    other = region_config(backend, TIMEOUT=300)
    config = {
        "main": main,
        "other": other,
        "short": region_config(backend, TIMEOUT=1),
        "forever": region_config(backend, TIMEOUT=None),
    }
    manager = make_manager(config)
    if backend == "request":
        with regions.request_scope():
            yield manager
    else:
        yield manager


# ---------------------------------------------------------------------------------------------
# Region API


def test_region_attributes(cache, backend):
    region = cache["main"]
    assert region.name == "main"
    assert region.backend == backend
    assert region.timeout == 300
    assert cache["forever"].timeout is None
    assert region.active is True
    assert region.ping() is True
    assert set(cache) == {"main", "other", "short", "forever"}
    assert "main" in cache and "nope" not in cache
    with pytest.raises(regions.UnknownRegion) as info:
        cache["nope"]
    assert isinstance(info.value, KeyError)
    assert "main" in str(info.value)


def test_get_set_delete(cache):
    region = cache["main"]
    assert region.get("k") is None
    assert region.get("k", MISSING) is MISSING
    region.set("k", {"a": [1, 2, 3]})
    assert region.get("k") == {"a": [1, 2, 3]}
    region.set("k", "replaced")
    assert region.get("k") == "replaced"
    assert region.delete("k") is None
    assert region.get("k", MISSING) is MISSING
    region.delete("k")  # deleting a missing key is fine
    assert region.get("k", MISSING) is MISSING


def test_none_value_is_cached(cache, counter):
    region = cache["main"]
    region.set("nothing", None)
    assert region.get("nothing", MISSING) is None

    @cache.region("main")
    def lookup(x):
        counter()
        return None

    assert lookup(1) is None
    assert lookup(1) is None
    assert counter.count == 1


def test_tuple_and_int_keys(cache):
    region = cache["main"]
    region.set(("a", 1), "tuple")
    region.set(1, "int")
    assert region.get(("a", 1)) == "tuple"
    assert region.get(("a", "1"), MISSING) is MISSING
    assert region.get(["a", 1], MISSING) in (MISSING, "tuple")  # list may or may not alias; never other
    assert region.get(1) == "int"
    assert region.get("1", MISSING) is MISSING


def test_unicode_keys_and_values(cache, counter):
    region = cache["main"]
    key = "ключ 鍵 🔑 with spaces\tand\ncontrol"
    value = "значение ✓ 🎉 " * 100
    region.set(key, value)
    assert region.get(key) == value
    assert region.get(key.replace("🔑", "🗝"), MISSING) is MISSING

    @cache.region("main")
    def greet(name):
        counter()
        return f"привет, {name}!"

    assert greet("мир 世界") == "привет, мир 世界!"
    assert greet("мир 世界") == "привет, мир 世界!"
    assert greet("мир 世界 ") == "привет, мир 世界 !"
    assert counter.count == 2


def test_large_values(cache, counter):
    region = cache["main"]
    blob = os.urandom(5 * 1024 * 1024)
    region.set("blob", blob)
    assert region.get("blob") == blob

    text = "ü" * (3 * 1024 * 1024)
    region.set("text", text)
    assert region.get("text") == text

    @cache.region("main")
    def big(n):
        counter()
        return bytes([n]) * (4 * 1024 * 1024)

    assert big(7) == b"\x07" * (4 * 1024 * 1024)
    assert big(7) == b"\x07" * (4 * 1024 * 1024)
    assert counter.count == 1


def test_get_or_create(cache, counter):
    region = cache["main"]

    def creator():
        return ["made", counter()]

    assert region.get_or_create("k", creator) == ["made", 1]
    assert region.get_or_create("k", creator) == ["made", 1]
    assert counter.count == 1
    assert region.get("k") == ["made", 1]
    region.delete("k")
    assert region.get_or_create("k", creator) == ["made", 2]


def test_stats_count_hits_and_misses(cache, backend):
    region = cache["main"]
    region.reset_stats()
    stats = region.stats()
    assert stats["hits"] == stats["misses"] == stats["errors"] == stats["sets"] == 0
    assert stats["hit_rate"] is None
    assert stats["mean_latency"] is None

    assert region.get("absent") is None
    region.set("present", 1)
    assert region.get("present") == 1
    assert region.get("present") == 1
    stats = region.stats()
    assert stats["misses"] == 1
    assert stats["hits"] == 2
    assert stats["sets"] == 1
    assert stats["errors"] == 0
    assert stats["hit_rate"] == pytest.approx(2 / 3)
    if backend in ("memcached", "file"):  # in-process stores may skip timing (costlier than the call)
        assert stats["time_spent"] > 0
        assert stats["mean_latency"] > 0
    else:
        assert stats["time_spent"] >= 0
        assert stats["mean_latency"] is None or stats["mean_latency"] >= 0

    @cache.region("main")
    def f(x):
        return x * 2

    region.reset_stats()
    f(1)
    f(1)
    f(1)
    stats = region.stats()
    assert (stats["misses"], stats["hits"], stats["sets"]) == (1, 2, 1)
    assert cache["other"].stats()["hits"] == 0  # stats are per region


def test_expiry_and_timeout_none(cache):
    short, forever = cache["short"], cache["forever"]
    short.set("default-timeout", 1)
    short.set("explicit-none", 2, timeout=None)
    forever.set("region-none", 3)
    forever.set("explicit-one", 4, timeout=1)
    start = time.monotonic()
    assert short.get("default-timeout") == 1
    assert forever.get("explicit-one") == 4
    # memcached has one-second resolution: a 1 s entry lives between 1 and 2 s.
    while short.get("default-timeout", MISSING) is not MISSING or forever.get("explicit-one", MISSING) \
            is not MISSING:
        assert time.monotonic() - start < 3.5, "entries with timeout 1 s did not expire"
        time.sleep(0.1)
    assert time.monotonic() - start >= 0.9, "entry expired before its timeout"
    assert short.get("explicit-none") == 2
    assert forever.get("region-none") == 3


def test_decorated_function_expires(cache, counter):
    @cache.region("short")
    def f():
        return counter()

    assert f() == 1
    assert f() == 1
    time.sleep(2.1)
    assert f() == 2


def test_clear_only_clears_that_region(cache):
    main, other = cache["main"], cache["other"]
    calls = []

    @cache.region("main")
    def f(x):
        calls.append(("f", x))
        return x

    @cache.region("other")
    def g(x):
        calls.append(("g", x))
        return x

    main.set("shared-key", "main")
    other.set("shared-key", "other")
    f(1), g(1)
    assert main.get("shared-key") == "main"
    assert other.get("shared-key") == "other"

    main.clear()
    assert main.get("shared-key", MISSING) is MISSING
    assert other.get("shared-key") == "other"
    f(1), g(1)
    assert calls == [("f", 1), ("g", 1), ("f", 1)]
    main.set("after", 1)
    assert main.get("after") == 1  # region usable after clear()


def test_count_where_supported(cache, backend):
    region = cache["main"]
    if backend == "memcached":
        assert region.count() is None
        return
    assert region.count() == 0
    for i in range(5):
        region.set(("k", i), i)
    region.set(("k", 0), "again")
    assert region.count() == 5
    region.delete(("k", 1))
    assert region.count() == 4
    region.clear()
    assert region.count() == 0


# ---------------------------------------------------------------------------------------------
# Decorated functions


def test_decorator_keeps_metadata(cache):
    def original(a, b: int = 2, *, c="x"):
        """Docstring."""
        return a

    wrapped = cache.region("main")(original)
    assert wrapped.__name__ == "original"
    assert wrapped.__doc__ == "Docstring."
    assert inspect.signature(wrapped) == inspect.signature(original)
    assert wrapped.__wrapped__ is original


def test_decorator_hit_miss_invalidate_refresh(cache):
    calls = []

    @cache.region("main")
    def f(x):
        calls.append(x)
        return [x, len(calls)]

    assert f(1) == [1, 1]  # miss
    assert f(1) == [1, 1]  # hit
    assert f(2) == [2, 2]  # miss
    assert calls == [1, 2]

    f.invalidate(1)
    assert f(1) == [1, 3]
    assert f(2) == [2, 2]  # untouched

    assert f.refresh(2) == [2, 4]
    assert f(2) == [2, 4]  # refresh stored the new value
    assert calls == [1, 2, 1, 2]

    assert f.uncached(1) == [1, 5]
    assert f.uncached(1) == [1, 6]
    assert f(1) == [1, 3]  # uncached calls do not store


def test_invalidate_all_only_that_function(cache):
    calls = []

    @cache.region("main")
    def f(x):
        calls.append(("f", x))
        return x

    @cache.region("main")
    def g(x):
        calls.append(("g", x))
        return x

    for x in (1, 2):
        f(x), g(x)
    f.invalidate_all()
    for x in (1, 2):
        f(x), g(x)
    assert calls == [("f", 1), ("g", 1), ("f", 2), ("g", 2), ("f", 1), ("f", 2)]


def test_cache_key(cache):
    @cache.region("main")
    def f(a, b=2):
        return a

    key = f.cache_key(1)
    hash(key)  # text for memcached/file, may be a tuple for in-process stores
    assert key == f.cache_key(1, 2) == f.cache_key(a=1) == f.cache_key(b=2, a=1)
    assert key != f.cache_key(1, 3)
    assert key != f.cache_key(2)


def test_cache_key_includes_the_namespace(cache):
    """Two functions with the same arguments are different entries, so their keys must differ."""

    @cache.region("main")
    def f(a, b=2):
        return a

    @cache.region("main")
    def g(a, b=2):
        return a

    assert f.cache_key(1) != g.cache_key(1)


def test_decorator_with_custom_timeout(cache, counter):
    @cache.region("forever", timeout=1)
    def f():
        return counter()

    assert f() == f() == 1
    time.sleep(2.1)
    assert f() == 2  # the per-function timeout (1 s) overrides the region's None


def test_decorator_with_key_callable(cache, counter):
    @cache.region("main", key=lambda user, verbose=False: user["id"])
    def profile(user, verbose=False):
        return (user["id"], counter())

    assert profile({"id": 7, "name": "a"}) == (7, 1)
    assert profile({"id": 7, "name": "changed"}, verbose=True) == (7, 1)  # the key callable decides
    assert profile({"id": 8}) == (8, 2)
    assert profile.cache_key({"id": 7}) != profile.cache_key({"id": 8})
    profile.invalidate({"id": 7})
    assert profile({"id": 7}) == (7, 3)


def test_async_function_awaited_value_is_cached(cache):
    calls = []

    @cache.region("main")
    async def fetch(x):
        calls.append(x)
        await asyncio.sleep(0)
        return {"x": x, "n": len(calls)}

    assert inspect.iscoroutinefunction(fetch)

    async def twice():
        return await fetch(1), await fetch(1)

    first, second = asyncio.run(twice())
    assert first == second == {"x": 1, "n": 1}
    # A new event loop must get the stored value, not a (spent) coroutine.
    assert asyncio.run(fetch(1)) == {"x": 1, "n": 1}
    assert calls == [1]

    async def invalidate_then_call():
        await fetch.invalidate(1)
        return await fetch(1)

    assert asyncio.run(invalidate_then_call()) == {"x": 1, "n": 2}

    async def refresh():
        return await fetch.refresh(1)

    assert asyncio.run(refresh()) == {"x": 1, "n": 3}
    assert asyncio.run(fetch(1)) == {"x": 1, "n": 3}

    async def invalidate_all():
        await fetch.invalidate_all()
        return await fetch(1)

    assert asyncio.run(invalidate_all()) == {"x": 1, "n": 4}
    assert calls == [1, 1, 1, 1]


def test_async_exception_not_cached(cache):
    calls = []

    @cache.region("main")
    async def flaky():
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("first call fails")
        return "ok"

    with pytest.raises(RuntimeError):
        asyncio.run(flaky())
    assert asyncio.run(flaky()) == "ok"
    assert asyncio.run(flaky()) == "ok"
    assert len(calls) == 2


def test_exceptions_are_not_cached(cache):
    calls = []

    @cache.region("main")
    def flaky(x):
        calls.append(x)
        if len(calls) == 1:
            raise ValueError("boom")
        return x * 10

    with pytest.raises(ValueError, match="boom"):
        flaky(1)
    assert flaky(1) == 10
    assert flaky(1) == 10
    assert calls == [1, 1]


def test_typed_keys(cache):
    calls = []

    @cache.region("main")
    def f(x):
        calls.append(x)
        return (type(x).__name__, repr(x))

    args = [1, "1", 1.0, True, None, "None"]
    expected = [("int", "1"), ("str", "'1'"), ("float", "1.0"), ("bool", "True"), ("NoneType", "None"),
                ("str", "'None'")]
    assert [f(a) for a in args] == expected
    assert [f(a) for a in args] == expected
    assert len(calls) == 6
    assert len({f.cache_key(a) for a in args}) == 6


def test_calls_that_do_not_fit_the_signature_raise_typeerror(cache):
    calls = []

    @cache.region("main")
    def f(a, b=2):
        calls.append(a)
        return a

    for bad_call in (lambda: f(), lambda: f(1, 2, 3), lambda: f(1, c=3), lambda: f(1, a=1)):
        with pytest.raises(TypeError) as info:
            bad_call()
        assert not isinstance(info.value, regions.UncacheableArgument)
    assert calls == []
    assert f(1) == 1


def test_defaults_are_applied(cache):
    calls = []

    @cache.region("main")
    def g(a, b=2):
        calls.append((a, b))
        return a + b

    assert g(10) == g(10, 2) == g(a=10) == g(b=2, a=10) == g(10, b=2) == 12
    assert calls == [(10, 2)]
    assert g(10, 3) == 13
    assert calls == [(10, 2), (10, 3)]


def test_methods_use_cache_key_of_self(cache):
    calls = []

    class Account:
        def __init__(self, pk):
            self.pk = pk

        def __cache_key__(self):
            return self.pk

        @cache.region("main")
        def balance(self, currency="EUR"):
            calls.append((self.pk, currency))
            return self.pk * 100

    assert Account(1).balance() == 100
    assert Account(1).balance("EUR") == 100  # a different instance, same __cache_key__
    assert Account(2).balance() == 200
    assert calls == [(1, "EUR"), (2, "EUR")]


@pytest.mark.parametrize("kind", ["memory", "memcached", "file"])
def test_default_manager_resolved_at_call_time(kind, region_config):
    regions.configure(None)  # the Django tests leave their manager as the default
    calls = []

    @regions.region("late")
    def f(x):
        calls.append(x)
        return x

    try:
        regions.configure({"late": region_config(kind)}, key_prefix="late-a" + str(time.time_ns()))
        assert f(1) == f(1) == 1
        assert calls == [1]
        assert regions.get_manager()["late"].backend == kind
        regions.configure({"late": region_config(kind)}, key_prefix="late-b" + str(time.time_ns()))
        assert f(1) == 1  # the new manager (new prefix / new location) is used
        assert calls == [1, 1]
    finally:
        regions.configure(None)
    with pytest.raises(regions.RegionError):
        regions.get_manager()
