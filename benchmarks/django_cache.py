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

Django is configured here (``settings.configure``) unless it already is.
"""

from __future__ import annotations

import pickle
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

FLOOR = "raw GET + pickle.loads, PyMemcacheCache's item"
DJANGO_MC = "Django PyMemcacheCache.get"
REGION_MC = "RegionCache.get, memcached region"
REGION_MEM = "RegionCache.get, memory region"
LOCMEM = "Django LocMemCache.get"
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


def build(address: str, server: tuple[str, int], secret: str, payload: Any) -> DjangoGroup:
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
    manager = regions.configure({
        "shared": {"BACKEND": "memcached", "LOCATION": address, "TIMEOUT": 3600},
        "mem": {"BACKEND": "memory", "TIMEOUT": 3600},
    }, key_prefix="djbench", secret=secret)
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

    def close() -> None:
        raw.close()
        django_mc.close()
        regions.configure(None)  # closes the manager

    return DjangoGroup(cases, versus, checks, close)
