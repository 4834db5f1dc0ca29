"""Malformed stored entries are misses: never an exception, never a wrong value (issue #4).

Whatever sits under a function's key (another program's item, a damaged file, a value written by
an incompatible version), a call returns the function's own result, counts the entry in
``stats()["rejected"]`` (or ``errors`` where reading itself failed), and rewrites the entry so the
next call is a hit.

* ``test_malformed_memcached_entry_is_a_miss_and_is_rewritten``: planted with a raw pymemcache
  client under ``f.cache_key(21)``: ``pickle.dumps(42)`` (the bug: TypeError in the caller),
  ``pickle.dumps({})`` (KeyError), ``pickle.dumps([1.0, None, 'x'])`` (served as the cached
  value), a tuple whose timestamp is text (served as the cached value), and bytes that are no
  pickle; for sync and async functions.
* ``test_malformed_entry_file_is_a_miss_and_is_rewritten``: the entry file at ``f.cache_key(21)``
  overwritten with bytes that are no pickle, with a pickle of a wrong shape, and with a header whose
  timestamp is text followed by a value (served as the cached value today).
"""

from __future__ import annotations

import asyncio
import pickle

import pytest
from pymemcache.client.base import Client

MEMCACHED_PAYLOADS = {
    "int": pickle.dumps(42),
    "empty-dict": pickle.dumps({}),
    "list-shaped-like-an-entry": pickle.dumps([1.0, None, "planted"]),
    "tuple-with-text-timestamp": pickle.dumps(("yesterday", None, "planted")),
    "not-a-pickle": b"\x00\xffthis is not a pickle\x13\x37" * 3,
}


def raw_client(address: str) -> Client:
    host, port = address.rsplit(":", 1)
    return Client((host, int(port)), connect_timeout=2, timeout=2)


def counted(stats: dict) -> int:
    return stats.get("rejected", 0) + stats["errors"]


@pytest.mark.parametrize("mode", ["sync", "async"])
@pytest.mark.parametrize("payload", list(MEMCACHED_PAYLOADS), ids=list(MEMCACHED_PAYLOADS))
def test_malformed_memcached_entry_is_a_miss_and_is_rewritten(
    payload, mode, memcached_server, region_config, make_manager
):
    manager = make_manager({"m": region_config("memcached", TIMEOUT=600)})
    region = manager["m"]
    calls: list = []

    if mode == "sync":

        @manager.region("m")
        def f(x):
            calls.append(x)
            return ("own", x)

        call = f
    else:

        @manager.region("m")
        async def f(x):
            calls.append(x)
            return ("own", x)

        def call(x):
            return asyncio.run(asyncio.wait_for(f(x), 10))

    key = f.cache_key(21)
    assert isinstance(key, str)
    data = MEMCACHED_PAYLOADS[payload]
    raw = raw_client(memcached_server)
    try:
        assert raw.set(key, data, noreply=False)
        assert raw.get(key) == data
        before = dict(region.stats())

        assert call(21) == ("own", 21), "the planted entry was served as the function's value"
        assert calls == [21]
        after = region.stats()
        assert counted(after) > counted(before), f"malformed entry not counted: {after}"

        assert call(21) == ("own", 21)
        assert calls == [21], "the malformed entry was not rewritten: the second call computed again"
        assert region.stats()["hits"] > after["hits"]
        assert raw.get(key) != data
    finally:
        raw.close()


def _file_payload(kind: str, original: bytes) -> bytes:
    if kind == "not-a-pickle":
        return b"\x00\xffthis is not a pickle\x13\x37" * 3
    if kind == "pickle-of-wrong-shape":
        return pickle.dumps(42) + pickle.dumps({"not": "an entry"})
    # a header like the real one (same stored key, when the file starts with one), but whose
    # timestamp is text; then a value
    stored_key = "i21"
    try:
        header = pickle.loads(original)
        if isinstance(header, tuple) and header and isinstance(header[0], str):
            stored_key = header[0]
    except Exception:
        pass
    return pickle.dumps((stored_key, "yesterday", None)) + pickle.dumps("planted")


@pytest.mark.parametrize("kind", ["not-a-pickle", "pickle-of-wrong-shape", "header-with-text-timestamp"])
def test_malformed_entry_file_is_a_miss_and_is_rewritten(kind, region_config, make_manager):
    manager = make_manager({"f": region_config("file", TIMEOUT=600)})
    region = manager["f"]
    calls: list = []

    @manager.region("f")
    def f(x):
        calls.append(x)
        return ("own", x)

    assert f(21) == ("own", 21)  # a genuine entry file first
    path = f.cache_key(21)
    with open(path, "rb") as fh:
        original = fh.read()
    planted = _file_payload(kind, original)
    with open(path, "wb") as fh:
        fh.write(planted)
    before = dict(region.stats())

    assert f(21) == ("own", 21), "the planted entry was served as the function's value"
    assert calls == [21, 21]
    after = region.stats()
    assert counted(after) > counted(before), f"malformed entry not counted: {after}"

    assert f(21) == ("own", 21)
    assert calls == [21, 21], "the malformed entry was not rewritten: the third call computed again"
    with open(path, "rb") as fh:
        assert fh.read() != planted


@pytest.mark.parametrize("backend", ["memcached", "file", "memory"])
def test_a_mocked_clock_returning_an_int_still_caches(backend, region_config, make_manager):
    """Tests of applications often patch ``time.time`` to return an int (Django's own cache tests
    do): entries written then are ours, not malformed ones (they were rejected as such)."""
    from unittest import mock

    manager = make_manager({"r": region_config(backend, TIMEOUT=60)})
    calls = []

    @manager.region("r")
    def f(x):
        calls.append(x)
        return x * 2

    with mock.patch("time.time", return_value=1_468_749_600):
        assert f(21) == 42 and f(21) == 42
        manager["r"].set("k", "v")
        assert manager["r"].get("k") == "v"
    assert calls == [21]
    assert manager["r"].stats()["rejected"] == 0
