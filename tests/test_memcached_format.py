"""The memcached storage format is data: heads of split values are plain tuples (no class, no module
path), and the format is part of every entry's key, so entries of an earlier layout are misses."""

from __future__ import annotations

import os
import pickle

from pymemcache.client.base import Client

import regions


def _manager(address: str) -> regions.CacheManager:
    return regions.CacheManager(
        {"mc": {"BACKEND": "memcached", "LOCATION": address, "OPTIONS": {"item_size": 100_000}}},
        key_prefix=f"format-{os.getpid()}-{id(object())}",
    )


def _client(address: str) -> Client:
    host, port = address.rsplit(":", 1)
    return Client((host, int(port)))


def test_a_head_is_plain_data(memcached_server):
    manager = _manager(memcached_server)
    blob = os.urandom(250_000)

    @manager.region("mc")
    def load(name):
        return blob

    load("a")
    stored = _client(memcached_server).get(load.cache_key("a"))[34:]  # past "R1" and the tag
    assert b"regions" not in stored  # no class of ours is named: no module path in the format
    head = pickle.loads(stored)
    assert type(head) is tuple and head[:3] == ("parts", 1, 3)


def test_entries_under_the_previous_layouts_keys_are_misses(memcached_server):
    manager = _manager(memcached_server)
    calls = []

    @manager.region("mc")
    def load(name):
        calls.append(name)
        return name.upper()

    wire = load.cache_key("b")
    assert ":F2." in wire
    client = _client(memcached_server)
    previous = wire.replace(":F2.", ":", 1)  # the same entry's key before the format mark
    client.set(previous, b"R1" + bytes(32) + pickle.dumps((0.0, None, "old")), noreply=False)
    assert load("b") == "B" and load("b") == "B"
    assert calls == ["b"]
    assert manager["mc"].stats()["rejected"] == 0  # never read, so never rejected
