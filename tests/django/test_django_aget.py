"""``RegionCache.aget`` read on the event loop (issue 16, part 3) for a region whose backend reads
there (``AsyncEntries``: Redis, memcached), against a real redis-server.

* ``test_aget_over_redis_reads_on_the_loop``: ``aget`` returns what ``set`` stored (a value of any
  picklable type, and ``default`` for a missing key), counts hits and misses as ``get`` does, and
  gives the region's I/O threads no work (every submit is counted).
* ``test_aget_of_a_planted_entry_is_the_default``: unsigned bytes under the key are never unpickled:
  ``aget`` returns ``default`` (read on the loop too), and the region counts the entry as rejected.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import pickle
import time
from typing import Any

import redis
from django.core.cache import caches
from django.test import override_settings

BACKEND = "django_regions.cache.RegionCache"


class CountingExecutor(concurrent.futures.ThreadPoolExecutor):
    def __init__(self) -> None:
        super().__init__(2, thread_name_prefix="counted-io")
        self.submits = 0

    def submit(self, *args: Any, **kwargs: Any) -> Any:  # type: ignore[override]
        self.submits += 1
        return super().submit(*args, **kwargs)


def redis_regions(settings: Any, url: str) -> None:
    settings.CACHE_REGIONS = {"shared": {"BACKEND": "redis", "LOCATION": url, "TIMEOUT": 600}}


def test_aget_over_redis_reads_on_the_loop(settings: Any, redis_server: str) -> None:
    redis_regions(settings, redis_server)
    with override_settings(CACHES={"default": {"BACKEND": BACKEND, "LOCATION": "shared"}}):
        cache = caches["default"]
        values = {"k1": {"a": [1, 2.5, "é"]}, "k2": b"bytes", "k3": None, "k4": 0}
        for key, value in values.items():
            cache.set(key, value)
        region = cache.region
        region.reset_stats()
        executor = CountingExecutor()
        region.store._executor = executor  # noqa: SLF001 - counted from now on

        async def main() -> list[Any]:
            got = [await cache.aget(key, "default") for key in values]
            return [*got, await cache.aget("absent", "default")]

        try:
            got = asyncio.run(main())
        finally:
            executor.shutdown()
        assert got == [*values.values(), "default"]
        assert got == [cache.get(key, "default") for key in [*values, "absent"]], "aget differs from get"
        assert executor.submits == 0, f"aget used the I/O threads {executor.submits} times"
        stats = region.stats()
        assert (stats["hits"], stats["misses"], stats["errors"]) == (4 + 4, 1 + 1, 0), stats


def test_aget_of_a_planted_entry_is_the_default(settings: Any, redis_server: str) -> None:
    redis_regions(settings, redis_server)
    with override_settings(CACHES={"default": {"BACKEND": BACKEND, "LOCATION": "shared"}}):
        cache = caches["default"]
        cache.set("k", "stored")
        region = cache.region
        namespace = cache._binding()[2]  # noqa: SLF001 - the alias's namespace manager
        wire = namespace.wire_key(cache.make_and_validate_key("k"))
        redis.Redis.from_url(redis_server).set(wire, pickle.dumps((time.time(), None, "planted")))
        region.reset_stats()
        executor = CountingExecutor()
        region.store._executor = executor  # noqa: SLF001 - counted from now on
        try:
            assert asyncio.run(cache.aget("k", "default")) == "default"
        finally:
            executor.shutdown()
        assert region.stats()["rejected"] == 1
        assert executor.submits == 0, "the rejected read used an I/O thread"
