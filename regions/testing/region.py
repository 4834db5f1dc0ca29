"""The Region API: get, set, delete, get_or_create, clear, stats, expiry."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

import regions
from regions.backends.contract import Store

from .base import MISSING, CallCounter, ContractBase
from .clock import ExpiryClock


class RegionContract(ContractBase):
    """The Region API: get, set, delete, get_or_create, clear, stats, expiry."""

    # ---------------------------------------------------------------------------------------
    # Region API

    def test_region_attributes(self, cache: regions.CacheManager, tmp_path: Path) -> None:
        region = cache["main"]
        assert region.name == "main"
        assert region.backend == self.backend_name(tmp_path)
        assert region.timeout == 300
        assert cache["forever"].timeout is None
        assert region.active is True
        assert region.ping() is True
        assert set(cache) - set(self.linked_regions(tmp_path)) == {"main", "other", "short", "forever"}
        assert "main" in cache and "nope" not in cache
        with pytest.raises(regions.UnknownRegion) as info:
            cache["nope"]
        assert isinstance(info.value, KeyError)
        assert "main" in str(info.value)

    def test_get_set_delete(self, cache: regions.CacheManager) -> None:
        region = cache["main"]
        assert region.get("k") is None
        assert region.get("k", MISSING) is MISSING
        region.set("k", {"a": [1, 2, 3]})
        assert region.get("k") == {"a": [1, 2, 3]}
        region.set("k", "replaced")
        assert region.get("k") == "replaced"
        region.delete("k")
        assert region.get("k", MISSING) is MISSING
        region.delete("k")  # deleting a missing key is fine
        assert region.get("k", MISSING) is MISSING

    def test_none_value_is_cached(self, cache: regions.CacheManager, counter: CallCounter) -> None:
        region = cache["main"]
        region.set("nothing", None)
        assert region.get("nothing", MISSING) is None

        @cache.region("main")
        def lookup(x: int) -> None:
            counter()
            return None

        assert lookup(1) is None
        assert lookup(1) is None
        assert counter.count == 1

    def test_tuple_and_int_keys(self, cache: regions.CacheManager) -> None:
        region = cache["main"]
        region.set(("a", 1), "tuple")
        region.set(1, "int")
        assert region.get(("a", 1)) == "tuple"
        assert region.get(("a", "1"), MISSING) is MISSING
        assert region.get(["a", 1], MISSING) in (MISSING, "tuple")  # a list may alias the tuple; never other
        assert region.get(1) == "int"
        assert region.get("1", MISSING) is MISSING

    def test_unicode_keys_and_values(self, cache: regions.CacheManager, counter: CallCounter) -> None:
        region = cache["main"]
        key = "ключ 鍵 🔑 with spaces\tand\ncontrol"
        value = "значение ✓ 🎉 " * 100
        region.set(key, value)
        assert region.get(key) == value
        assert region.get(key.replace("🔑", "🗝"), MISSING) is MISSING

        @cache.region("main")
        def greet(name: str) -> str:
            counter()
            return f"привет, {name}!"

        assert greet("мир 世界") == "привет, мир 世界!"
        assert greet("мир 世界") == "привет, мир 世界!"
        assert greet("мир 世界 ") == "привет, мир 世界 !"
        assert counter.count == 2

    def test_large_values(self, cache: regions.CacheManager, counter: CallCounter) -> None:
        region = cache["main"]
        blob = os.urandom(5 * 1024 * 1024)
        region.set("blob", blob)
        assert region.get("blob") == blob

        text = "ü" * (3 * 1024 * 1024)
        region.set("text", text)
        assert region.get("text") == text

        @cache.region("main")
        def big(n: int) -> bytes:
            counter()
            return bytes([n]) * (4 * 1024 * 1024)

        assert big(7) == b"\x07" * (4 * 1024 * 1024)
        assert big(7) == b"\x07" * (4 * 1024 * 1024)
        assert counter.count == 1

    def test_get_or_create(self, cache: regions.CacheManager, counter: CallCounter) -> None:
        region = cache["main"]

        def creator() -> list[Any]:
            return ["made", counter()]

        assert region.get_or_create("k", creator) == ["made", 1]
        assert region.get_or_create("k", creator) == ["made", 1]
        assert counter.count == 1
        assert region.get("k") == ["made", 1]
        region.delete("k")
        assert region.get_or_create("k", creator) == ["made", 2]

    def test_stats_count_hits_and_misses(self, cache: regions.CacheManager) -> None:
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
        if region.store.timed:  # in-process stores may skip timing (costlier than the call)
            assert stats["time_spent"] > 0
            assert stats["mean_latency"] > 0
        else:
            assert stats["time_spent"] >= 0
            assert stats["mean_latency"] is None or stats["mean_latency"] >= 0

        @cache.region("main")
        def f(x: int) -> int:
            return x * 2

        region.reset_stats()
        f(1)
        f(1)
        f(1)
        stats = region.stats()
        assert (stats["misses"], stats["hits"], stats["sets"]) == (1, 2, 1)
        assert cache["other"].stats()["hits"] == 0  # stats are per region

    def test_expiry_and_timeout_none(self, clock: ExpiryClock, cache: regions.CacheManager) -> None:
        short, forever = cache["short"], cache["forever"]
        short.set("default-timeout", 1)
        short.set("explicit-none", 2, timeout=None)
        forever.set("region-none", 3)
        forever.set("explicit-one", 4, timeout=1)
        assert short.get("default-timeout") == 1
        assert forever.get("explicit-one") == 4
        # memcached has one-second resolution: a 1 s entry lives between 1 and 2 s.
        passed = clock.until(
            lambda: short.get("default-timeout", MISSING) is MISSING
            and forever.get("explicit-one", MISSING) is MISSING,
            within=3.5, what="entries with timeout 1 s did not expire",
        )
        assert passed >= 0.9, "entry expired before its timeout"
        assert short.get("explicit-none") == 2
        assert forever.get("region-none") == 3

    def test_decorated_function_expires(
        self, clock: ExpiryClock, cache: regions.CacheManager, counter: CallCounter
    ) -> None:
        @cache.region("short")
        def f() -> int:
            return counter()

        assert f() == 1
        assert f() == 1
        passed = clock.until(lambda: f() != 1, within=3.5, what="the region's timeout did not expire f()")
        assert passed >= 0.9, "f() expired before the region's timeout (1 s)"
        assert f() == 2

    def test_clear_only_clears_that_region(self, cache: regions.CacheManager) -> None:
        main, other = cache["main"], cache["other"]
        calls = []

        @cache.region("main")
        def f(x: int) -> int:
            calls.append(("f", x))
            return x

        @cache.region("other")
        def g(x: int) -> int:
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

    def test_count_where_supported(self, cache: regions.CacheManager) -> None:
        region = cache["main"]
        if type(region.store).count is Store.count:  # the backend cannot count (memcached)
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
