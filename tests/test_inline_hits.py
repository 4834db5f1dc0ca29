"""The decorator's inline hits on in-process stores (:mod:`regions.decorator`), and what they rest
on: the memory store's records and LRU order (:mod:`regions.backends.memory`), the tag versions'
serial (:class:`regions.tags.versions.LocalVersions`), tracing switching them off."""

from __future__ import annotations

import collections
import time

import pytest

import regions
from regions import trace
from regions.tags import set_uncached_check


def counted(manager, region, **options):
    """A function cached in ``region`` and the count of its computations per argument."""
    computed: collections.Counter = collections.Counter()

    @manager.region(region, **options)
    def f(item):
        computed[item] += 1
        return (item, computed[item])

    return f, computed


def test_memory_evicts_the_least_recently_used(region_config, make_manager):
    manager = make_manager({"m": region_config("memory", OPTIONS={"max_entries": 3})})
    f, computed = counted(manager, "m")
    for item in "abc":
        f(item)
    assert f("a") == ("a", 1)  # a hit: "a" is now the most recently used, "b" the least
    f("d")  # over the bound: "b" goes
    assert manager["m"].store.count() == 3
    assert f("a") == ("a", 1) and f("c") == ("c", 1) and f("d") == ("d", 1)
    assert f("b") == ("b", 2), "the least recently used entry was kept"


def test_memory_stays_within_its_bound_across_namespaces(region_config, make_manager):
    manager = make_manager({"m": region_config("memory", OPTIONS={"max_entries": 64})})
    f, computed = counted(manager, "m")
    g = manager.region("m")(lambda item: item)  # a namespace of its own
    hot = list(range(8))
    for i in range(500):
        for item in hot:
            assert f(item) == (item, 1)  # used all along: never evicted
        g(i)
        assert manager["m"].store.count() <= 64
    assert all(computed[item] == 1 for item in hot)
    table = manager["m"].store.tables[g.cache_key(0)[0]]  # cache_key: (namespace, key)
    assert (499,) in table and (0,) not in table  # the newest kept, the oldest gone


def test_expired_memory_entries_are_not_served_inline(region_config, make_manager):
    manager = make_manager({"m": region_config("memory", TIMEOUT=10)})
    f, computed = counted(manager, "m")
    assert f(1) == (1, 1) and f(1) == (1, 1)
    store = manager["m"].store
    table = store.tables[f.cache_key(1)[0]]  # cache_key: (namespace, key)
    record = table[(1,)]
    assert record[0] == record[3][0] + 10, "a record expires at stored_at + ttl"
    store.put(table, (1,), (time.time() - 100, 10, "expired 90 s ago"))  # past its ttl and stale time
    assert f(1) == (1, 2), "an expired record was served"


def test_tagged_inline_hit_misses_after_a_bump(region_config, make_manager):
    manager = make_manager({"m": region_config("memory")})
    f, computed = counted(manager, "m", tags=lambda item: [f"item:{item}", "items"])
    assert f(1) == (1, 1) and f(1) == (1, 1) and f(2) == (2, 1)
    manager.invalidate_tags("item:1")
    assert f(1) == (1, 2), "a bumped tag's entry was served"
    assert f(2) == (2, 1), "an entry of other tags was dropped"
    assert f(1) == (1, 2)
    manager.invalidate_tags("items")
    assert f(1) == (1, 3) and f(2) == (2, 2)


def test_tagged_inline_hit_asks_the_uncached_check(region_config, make_manager):
    manager = make_manager({"m": region_config("memory")})
    f, computed = counted(manager, "m", tags=lambda item: [f"item:{item}"])
    assert f(1) == (1, 1) and f(1) == (1, 1)
    asked = []
    set_uncached_check(lambda names: asked.append(names) or "item:1" in names)
    try:
        assert f(1) == (1, 2), "an entry of a tag changed in this transaction was served"
    finally:
        set_uncached_check(None)
    assert ("item:1",) in asked


@pytest.mark.parametrize("backend", ["memory", "request"])
def test_tracing_sees_inline_hits(backend, region_config, make_manager):
    manager = make_manager({"m": region_config(backend)})
    f, computed = counted(manager, "m")
    with regions.request_scope():
        f(1)
        f(1)
        with trace.Recorder() as recorder:
            assert f(1) == (1, 1)
        assert [call.outcome for call in recorder.calls] == ["hit"]
        assert f(1) == (1, 1)  # inline again once tracing is off
    assert computed[1] == 1
