"""Group (f) of ``benchmarks/run.py``: a ``cache.get`` hit through Django's cache framework.

Built here, timed and reported by ``run.py`` like the other groups. The cases, all hits of one key
holding the benchmark payload (about 1 KB pickled), on the same memcached server:

* the floor: a raw pymemcache GET + ``pickle.loads`` of the item Django's ``PyMemcacheCache`` stored
  (its key, its bytes): the hand-written minimum of a Django memcached hit;
* Django's own ``PyMemcacheCache`` (``django.core.cache.backends.memcached``), the reference;
* ``django_regions.cache.RegionCache`` over a memcached region (signed entries, failure policy,
  stats): the figure issue 10 asks for, as a ratio to ``PyMemcacheCache`` in the same rounds;
* ``RegionCache`` over a memory region, and Django's ``LocMemCache``: the in-process pair;
* ``get_many`` / ``set_many`` / ``delete_many`` of :data:`MANY` keys on ``RegionCache`` (memcached
  region) and on ``PyMemcacheCache``: one round trip per server on both sides (issue 17: at most
  1.0x Django's). ``set_many`` writes the benchmark payload under each key; ``delete_many`` deletes
  keys that hold nothing by then on both sides (the batch's cost, not the items').

With a Redis URL (``redis_url``), on one redis-server, in the same rounds (issue 16):

* a raw redis-py GET + ``pickle.loads`` of the item Django's ``RedisCache`` stored (a reference row);
* Django's own ``RedisCache`` (``django.core.cache.backends.redis``, since Django 4.0);
* django-redis's ``RedisCache`` (``DefaultClient``), when installed (else a note says it is skipped);
* ``RegionCache`` over a Redis region: no slower than either, as ratios in the same rounds.

Django is configured here (``settings.configure``) unless it already is.
"""

from __future__ import annotations

import functools
import pickle
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

FLOOR = "raw GET + pickle.loads, PyMemcacheCache's item"
DJANGO_MC = "Django PyMemcacheCache.get"
REGION_MC = "RegionCache.get, memcached region"
REGION_MEM = "RegionCache.get, memory region"
LOCMEM = "Django LocMemCache.get"
REDIS_FLOOR = "raw redis-py GET + loads, RedisCache's item"
DJANGO_REDIS = "Django RedisCache.get"
DJANGO_REDIS_PKG = "django-redis RedisCache.get"
REGION_REDIS = "RegionCache.get, redis region"
KEY = "catalog:42"
MANY = 20
DJANGO_GET_MANY = f"Django PyMemcacheCache.get_many, {MANY} keys"
REGION_GET_MANY = f"RegionCache.get_many, {MANY} keys"
DJANGO_SET_MANY = f"Django PyMemcacheCache.set_many, {MANY} keys"
REGION_SET_MANY = f"RegionCache.set_many, {MANY} keys"
DJANGO_DELETE_MANY = f"Django PyMemcacheCache.delete_many, {MANY} keys"
REGION_DELETE_MANY = f"RegionCache.delete_many, {MANY} keys"


@dataclass
class DjangoGroup:
    cases: list[tuple[str, Callable[[], object], str]]
    versus: list[tuple[str, str, str, float | None]]
    checks: list[tuple[Any, str]]
    close: Callable[[], None] = field(repr=False, default=lambda: None)
    skipped: list[str] = field(default_factory=list)


def build(address: str, server: tuple[str, int], secret: str, payload: Any,
          redis_url: str | None = None) -> DjangoGroup:
    import django
    from django.conf import settings

    if not settings.configured:
        settings.configure(USE_TZ=True, CACHES={})
        django.setup()
    from django.core.cache.backends.locmem import LocMemCache
    from django.core.cache.backends.memcached import PyMemcacheCache
    from pymemcache.client.base import Client

    import regions
    from django_regions.cache import RegionCache

    # RegionCache's LOCATION names a region of the process default manager
    config: dict[str, Any] = {
        "shared": {"BACKEND": "memcached", "LOCATION": address, "TIMEOUT": 3600},
        "mem": {"BACKEND": "memory", "TIMEOUT": 3600},
    }
    if redis_url:
        config["rd"] = {"BACKEND": "redis", "LOCATION": redis_url, "TIMEOUT": 3600}
    manager = regions.configure(config, key_prefix="djbench", secret=secret)
    assert manager is not None

    django_mc = PyMemcacheCache(address, {"OPTIONS": {"no_delay": True}})
    region_mc = RegionCache("shared", {})
    region_mem = RegionCache("mem", {})
    locmem = LocMemCache("bench", {})
    for cache in (django_mc, region_mc, region_mem, locmem):
        cache.set(KEY, payload, 3600)
        assert cache.get(KEY) == payload
    manager["shared"].reset_stats()
    manager["mem"].reset_stats()

    raw = Client(server, connect_timeout=1.0, timeout=1.0, no_delay=True)
    wire = django_mc.make_key(KEY)
    assert pickle.loads(raw.get(wire)) == payload, "the floor does not read PyMemcacheCache's item"
    loads, get = pickle.loads, raw.get

    def floor() -> object:
        return loads(get(wire))

    keys = [f"catalog:many:{i}" for i in range(MANY)]
    many = dict.fromkeys(keys, payload)
    gone = [f"catalog:gone:{i}" for i in range(MANY)]
    for cache in (django_mc, region_mc):
        assert cache.set_many(many, 3600) == []
        assert cache.get_many(keys) == many
    manager["shared"].reset_stats()

    def region_get_many() -> object:
        found = region_mc.get_many(keys)
        assert len(found) == MANY  # every key a hit (a miss would flatter the region)
        return found

    cases: list[tuple[str, Callable[[], object], str]] = [
        (FLOOR, floor, "floor"),
        (DJANGO_MC, lambda: django_mc.get(KEY), "reference"),
        (REGION_MC, lambda: region_mc.get(KEY), "see below"),
        (LOCMEM, lambda: locmem.get(KEY), "reference"),
        (REGION_MEM, lambda: region_mem.get(KEY), "see below"),
        (DJANGO_GET_MANY, lambda: django_mc.get_many(keys), "reference"),
        (REGION_GET_MANY, region_get_many, "see below"),
        (DJANGO_SET_MANY, lambda: django_mc.set_many(many, 3600), "reference"),
        (REGION_SET_MANY, lambda: region_mc.set_many(many, 3600), "see below"),
        (DJANGO_DELETE_MANY, lambda: django_mc.delete_many(gone), "reference"),
        (REGION_DELETE_MANY, lambda: region_mc.delete_many(gone), "see below"),
    ]
    versus: list[tuple[str, str, str, float | None]] = [
        ("ratio RegionCache memcached / PyMemcacheCache", REGION_MC, DJANGO_MC, 0.80),
        ("ratio RegionCache memory / LocMemCache", REGION_MEM, LOCMEM, None),
        (f"ratio get_many / PyMemcacheCache, {MANY} keys", REGION_GET_MANY, DJANGO_GET_MANY, 1.0),
        (f"ratio set_many / PyMemcacheCache, {MANY} keys", REGION_SET_MANY, DJANGO_SET_MANY, 1.0),
        (f"ratio delete_many / PyMemcacheCache, {MANY} keys", REGION_DELETE_MANY,
         DJANGO_DELETE_MANY, 1.0),
    ]
    checks = [(manager["shared"], REGION_MC), (manager["mem"], REGION_MEM)]
    closers: list[Callable[[], None]] = [raw.close, django_mc.close]
    skipped: list[str] = []
    if redis_url:
        skipped = _redis_cases(redis_url, payload, manager, cases, versus, checks, closers)

    def close() -> None:
        for each in closers:
            each()
        regions.configure(None)  # closes the manager

    return DjangoGroup(cases, versus, checks, close, skipped)


def _redis_cases(url: str, payload: Any, manager: Any, cases: list[tuple[str, Callable[[], object], str]],
                 versus: list[tuple[str, str, str, float | None]], checks: list[tuple[Any, str]],
                 closers: list[Callable[[], None]]) -> list[str]:
    """Add the Redis cases (one server, one key each) to the lists; returns the skip notes."""
    import redis
    from django.core.cache.backends.redis import RedisCache

    from django_regions.cache import RegionCache

    django_rd = RedisCache(url, {})
    region_rd = RegionCache("rd", {})
    contenders: list[tuple[str, Any]] = [(DJANGO_REDIS, django_rd), (REGION_REDIS, region_rd)]
    skipped: list[str] = []
    try:
        from django_redis.cache import RedisCache as DjangoRedisPackage
    except ImportError:
        skipped.append("django-redis not installed (pip install django-redis): no django-redis reference")
    else:
        contenders.insert(1, (DJANGO_REDIS_PKG, DjangoRedisPackage(url, {"KEY_PREFIX": "djredis"})))
    for _, cache in contenders:
        cache.set(KEY, payload, 3600)
        assert cache.get(KEY) == payload
    manager["rd"].reset_stats()

    raw = redis.Redis.from_url(url, socket_timeout=1.0)
    wire = django_rd.make_and_validate_key(KEY)
    assert pickle.loads(raw.get(wire)) == payload, "the reference does not read RedisCache's item"
    loads, get = pickle.loads, raw.get
    cases.append((REDIS_FLOOR, lambda: loads(get(wire)), "reference"))
    for name, cache in contenders:
        note = "see below" if cache is region_rd else "reference"
        cases.append((name, functools.partial(cache.get, KEY), note))
    versus.append(("ratio RegionCache redis / Django RedisCache", REGION_REDIS, DJANGO_REDIS, 1.0))
    if not skipped:
        versus.append(("ratio RegionCache redis / django-redis", REGION_REDIS, DJANGO_REDIS_PKG, 1.0))
    checks.append((manager["rd"], REGION_REDIS))
    closers.extend([raw.close, django_rd.close])
    return skipped
