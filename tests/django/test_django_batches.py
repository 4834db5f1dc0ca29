"""Django's ``get_many`` / ``set_many`` / ``delete_many`` on ``RegionCache`` over two real memcached
servers: one round trip per server for each (counted by a forwarding proxy in front of each), and a
killed server costs its keys only (misses, failed keys), never an exception."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from typing import Any

import pytest
from django.core.cache import caches
from django.test import override_settings

from tests.conftest import MemcachedServer
from tests.test_memcached_batch import TurnCounter

N = 20


@pytest.fixture
def two_servers() -> Iterator[list[MemcachedServer]]:
    servers = [MemcachedServer(), MemcachedServer()]
    yield servers
    for server in servers:
        server.stop()


@pytest.fixture
def counters(two_servers: list[MemcachedServer]) -> Iterator[list[TurnCounter]]:
    made = [TurnCounter(server.address) for server in two_servers]
    yield made
    for counter in made:
        counter.close()


@pytest.fixture
def regions_config(counters: list[TurnCounter]) -> dict[str, dict[str, Any]]:
    return {"functions": {"BACKEND": "memcached", "LOCATION": [c.address for c in counters], "TIMEOUT": 300,
                          "OPTIONS": {"sync_interval": 3600, "timeout": 0.5, "connect_timeout": 0.5}}}


CACHES = {"default": {"BACKEND": "django_regions.cache.RegionCache", "LOCATION": "functions"}}


def spread(cache: Any, keys: list[str]) -> dict[str, list[str]]:
    """Which server label holds each Django key."""
    region = cache.region
    ns = region.namespace(cache._qualname)
    out: dict[str, list[str]] = {}
    for key in keys:
        node = region.store.nodes.node_for(ns.wire_key(cache.make_key(key)))
        out.setdefault(node.label, []).append(key)
    return out


@override_settings(CACHES=CACHES)
def test_each_batch_is_one_round_trip_per_server(counters: list[TurnCounter]) -> None:
    cache = caches["default"]
    data = {f"k{i}": {"n": i} for i in range(N)}
    assert len(spread(cache, list(data))) == 2, "the test needs keys on both servers"
    cache.get_many(["warm"])  # connections and generation counters

    for name, call, expected in [
        ("set_many", lambda: cache.set_many(data), []),
        ("get_many", lambda: cache.get_many([*data, "absent"]), data),
        ("delete_many", lambda: cache.delete_many(list(data)), None),
        ("get_many after delete_many", lambda: cache.get_many(list(data)), {}),
    ]:
        for c in counters:
            c.turns = 0
        assert call() == expected, name
        assert [c.turns for c in counters] == [1, 1], name
    stats = cache.region.stats()
    assert (stats["errors"], stats["unavailable"], stats["hits"]) == (0, 0, N), stats


@override_settings(CACHES=CACHES)
def test_a_killed_server_costs_its_keys_only(two_servers: list[MemcachedServer]) -> None:
    cache = caches["default"]
    data = {f"k{i}": i for i in range(N)}
    assert cache.set_many(data) == []
    assert len(spread(cache, list(data))) == 2
    dead = two_servers[0]
    dead.proc.send_signal(signal.SIGKILL)
    dead.proc.wait()
    found = cache.get_many(list(data))
    lost = sorted(set(data) - set(found))
    assert lost and found and all(found[k] == data[k] for k in found)  # the live server's keys
    assert sorted(cache.set_many(data)) == lost  # the dead server's keys, and only those
    cache.delete_many(list(data))  # no exception: its deletes wait for the server
    assert cache.get_many(list(data)) == {}
