"""Values larger than one memcached item are split into parts: whole value or a miss, never half."""

from __future__ import annotations

import os
import pickle

from pymemcache.client.base import Client

import regions
from regions.backends.memcached.parts import Head


def _manager(address: str) -> regions.CacheManager:
    return regions.CacheManager(
        {"mc": {"BACKEND": "memcached", "LOCATION": address, "OPTIONS": {"item_size": 100_000}}},
        key_prefix=f"parts-{os.getpid()}-{id(object())}",
    )


def test_large_value_round_trips_in_parts(memcached_server, memcached_stats):
    manager = _manager(memcached_server)
    blob = os.urandom(350_000)
    calls = []

    @manager.region("mc")
    def load(name):
        calls.append(name)
        return blob

    assert load("a") == blob
    before = memcached_stats()
    assert load("a") == blob
    after = memcached_stats()
    assert calls == ["a"]
    # one GET for the head, one multi-get round trip for the four parts
    assert int(after["cmd_get"]) - int(before["cmd_get"]) == 5


def test_a_lost_part_is_a_miss(memcached_server):
    manager = _manager(memcached_server)
    blob = os.urandom(250_000)
    calls = []

    @manager.region("mc")
    def load(name):
        calls.append(name)
        return blob

    load("b")
    ns = manager["mc"].namespace(f"{load.__module__}.{load.__qualname__}")
    wire = load.cache_key("b")
    host, port = memcached_server.rsplit(":", 1)
    client = Client((host, int(port)))
    head = Head.read(pickle.loads(client.get(wire)[34:]))  # past "R1" and the tag: the head names the parts
    assert head.parts == 3
    # Evicted by memcached, say. Waiting for the reply: a delete without one (pymemcache's default)
    # may still be queued on its connection when the next read arrives on another, and that read
    # finds the part (seen on a busy machine).
    assert client.delete(ns.parts.keys(wire, head)[1], noreply=False) is True
    client.close()
    assert load("b") == blob
    assert calls == ["b", "b"]
