"""Entries are data, never code: planted, altered, copied and pre-upgrade entries are rejected
before anything in them is unpickled, counted, recomputed and rewritten.

The planted pickles would create a marker file when unpickled (``open(marker, "w")``); the marker
must never appear.
"""

from __future__ import annotations

import logging
import pickle
import random
import time
from pathlib import Path
from typing import Any

import pytest
from pymemcache.client.base import Client

import regions
from regions.backends.file import entry_format
from regions.backends.memcached.parts import Head
from regions.signing import Signer

SECRET = "a-test-secret-for-signed-entries"


class Evil:
    """Unpickling this creates ``marker``: proof that code ran."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, tuple[str, str]]:
        return (open, (str(self.marker), "w"))


def evil_pickle(marker: Path) -> bytes:
    return pickle.dumps((time.time(), None, Evil(marker)), protocol=5)


def raw_client(address: str) -> Client:
    host, port = address.rsplit(":", 1)
    return Client((host, int(port)), connect_timeout=2, timeout=2)


@pytest.fixture
def setup(request: pytest.FixtureRequest, region_config: Any, make_manager: Any, tmp_path: Path) -> Any:
    """(manager, region, f, computed list, marker path, backend) for the parametrized backend."""
    backend = request.param
    options = {"item_size": 2048} if backend == "memcached" else {}
    manager = make_manager({"r": region_config(backend, TIMEOUT=300, OPTIONS=options)}, secret=SECRET)
    computed: list[int] = []

    @manager.region("r")
    def f(x: int) -> dict[str, Any]:
        computed.append(x)
        return {"x": x, "blob": "b" * (20_000 if x >= 100 else 10)}

    return manager, manager["r"], f, computed, tmp_path / "code-ran", backend


def plant(backend: str, f: Any, x: int, data: bytes, memcached: str | None) -> None:
    key = f.cache_key(x)
    if backend == "memcached":
        raw_client(memcached).set(key, data, noreply=False)  # type: ignore[arg-type]
    else:
        Path(key).parent.mkdir(parents=True, exist_ok=True)
        Path(key).write_bytes(data)


def read_raw(backend: str, f: Any, x: int, memcached: str | None) -> bytes:
    key = f.cache_key(x)
    if backend == "memcached":
        return raw_client(memcached).get(key)  # type: ignore[no-any-return]
    return Path(key).read_bytes()


def assert_rejected_then_rewritten(region: Any, f: Any, x: int, computed: list[int], marker: Path) -> None:
    region.reset_stats()
    computed.clear()
    assert f(x)["x"] == x  # the function's own value, never the planted one
    assert not marker.exists(), "a planted pickle was unpickled: code ran"
    assert computed == [x]
    # rejected at each read of the call (a file region's leader reads again under its lock)
    assert region.stats()["rejected"] >= 1 and region.stats()["errors"] == 0
    assert f(x)["x"] == x  # rewritten: served from the cache now
    assert computed == [x]


BACKENDS = pytest.mark.parametrize("setup", ["memcached", "file"], indirect=True)


@BACKENDS
def test_a_planted_pickle_runs_no_code(setup: Any, memcached_server: str) -> None:
    manager, region, f, computed, marker, backend = setup
    f(1)
    plant(backend, f, 1, evil_pickle(marker), memcached_server)
    assert_rejected_then_rewritten(region, f, 1, computed, marker)


@BACKENDS
def test_a_planted_entry_with_a_forged_tag_runs_no_code(setup: Any, memcached_server: str) -> None:
    manager, region, f, computed, marker, backend = setup
    f(1)
    evil = evil_pickle(marker)
    if backend == "memcached":
        forged = b"R1" + Signer("not-our-secret-at-all").tag(b"whatever", evil) + evil
    else:  # a well-formed file tagged with another key
        forged = _file_entry(Signer("not-our-secret-at-all"), f, 1, evil)
    plant(backend, f, 1, forged, memcached_server)
    assert_rejected_then_rewritten(region, f, 1, computed, marker)


def _file_entry(signer: Signer, f: Any, x: int, value_pickle: bytes) -> bytes:
    """An entry file in the real layout, with the value's pickle as given, tagged by ``signer``."""
    head = pickle.dumps(("ns", "key", time.time(), None, len(value_pickle), signer.tag(b"v", value_pickle)))
    return entry_format.MAGIC + value_pickle + head + len(head).to_bytes(4, "big") + signer.tag(b"h", head)


@BACKENDS
def test_an_entry_from_before_signing_is_a_miss(setup: Any, memcached_server: str) -> None:
    """What 0.1 stored: a bare pickle of (stored_at, ttl, value) (memcached), or header + value."""
    manager, region, f, computed, marker, backend = setup
    f(1)
    entry = (time.time(), 300.0, {"x": 1, "blob": "old"})
    if backend == "memcached":
        old = pickle.dumps(entry, pickle.HIGHEST_PROTOCOL)
    else:
        old = pickle.dumps(("ns", "k", entry[0], entry[1]), protocol=5) + pickle.dumps(entry[2], protocol=5)
    plant(backend, f, 1, old, memcached_server)
    region.reset_stats()
    computed.clear()
    assert f(1) == {"x": 1, "blob": "b" * 10}
    assert computed == [1] and region.stats()["rejected"] >= 1


@BACKENDS
def test_another_functions_entry_copied_under_this_key_is_a_miss(setup: Any, memcached_server: str) -> None:
    manager, region, f, computed, marker, backend = setup

    @manager.region("r")
    def g(x: int) -> dict[str, Any]:
        return {"x": "from g", "blob": ""}

    g(1)
    f(1)
    plant(backend, f, 1, read_raw(backend, g, 1, memcached_server), memcached_server)
    region.reset_stats()
    computed.clear()
    assert f(1)["x"] == 1
    assert computed == [1] and region.stats()["rejected"] >= 1


@BACKENDS
def test_flipped_bits_never_become_a_wrong_value(setup: Any, memcached_server: str) -> None:
    """Today's behaviour to beat: a flipped bit in a file entry returned a wrong value in 219 of 500."""
    manager, region, f, computed, marker, backend = setup
    rng = random.Random(7)
    f(1)
    good = read_raw(backend, f, 1, memcached_server)
    wrong = 0
    for _ in range(200):
        damaged = bytearray(good)
        bit = rng.randrange(len(damaged) * 8)
        damaged[bit // 8] ^= 1 << (bit % 8)
        plant(backend, f, 1, bytes(damaged), memcached_server)
        if f(1) != {"x": 1, "blob": "b" * 10}:
            wrong += 1
    assert wrong == 0
    assert region.stats()["rejected"] >= 200  # every damaged entry was caught


@pytest.mark.parametrize("setup", ["memcached"], indirect=True)
def test_split_values_head_and_parts_are_checked(setup: Any, memcached_server: str) -> None:
    manager, region, f, computed, marker, backend = setup
    value = f(100)
    assert len(value["blob"]) == 20_000  # stored as a head plus parts (item_size 2048)
    wire = f.cache_key(100)
    client = raw_client(memcached_server)
    blob = client.get(wire)
    head = Head.read(pickle.loads(blob[34:]))
    ns = region.namespace(f"{f.__module__}.{f.__qualname__}")
    parts = ns.parts.keys(wire, head)
    assert len(parts) == head.parts > 1

    # a forged part: the evil pickle, padded to the part's length
    first = client.get(parts[0])
    evil = evil_pickle(marker)
    client.set(parts[0], (evil + b"." * len(first))[: len(first)], noreply=False)
    assert_rejected_then_rewritten(region, f, 100, computed, marker)

    # a forged head pointing at parts that hold a pickle of the attacker's
    evil_head = pickle.dumps(head._replace(parts=1, size=len(evil)).data(), pickle.HIGHEST_PROTOCOL)
    client.set(wire, b"R1" + bytes(32) + evil_head, noreply=False)
    client.set(parts[0], evil, noreply=False)
    assert_rejected_then_rewritten(region, f, 100, computed, marker)


@pytest.mark.parametrize("backend", ["memcached", "file"])
def test_rotating_the_secret_keeps_the_cache_with_fallbacks(
    backend: str, region_config: Any, make_manager: Any
) -> None:
    conf = region_config(backend, TIMEOUT=300)
    prefix = "rotate" + str(time.time_ns())
    old = make_manager({"r": conf}, key_prefix=prefix, secret="the-old-secret-value")
    old["r"].set("k", "v")
    rotated = make_manager({"r": dict(conf)}, key_prefix=prefix, secret="the-new-secret-value",
                           secret_fallbacks=["the-old-secret-value"])
    assert rotated["r"].get("k") == "v"  # read under a fallback
    rotated["r"].set("k2", "v2")  # written under the new secret
    assert old["r"].get("k2") is None and old["r"].stats()["rejected"] == 1
    dropped = make_manager({"r": dict(conf)}, key_prefix=prefix, secret="the-new-secret-value")
    assert dropped["r"].get("k") is None and dropped["r"].stats()["rejected"] == 1


def test_without_a_secret_the_manager_warns_once_naming_the_regions(
    region_config: Any, make_manager: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="regions")
    config = {"m": region_config("memcached"), "f": region_config("file"), "mem": {"BACKEND": "memory"}}
    make_manager(config, secret=None)
    lines = [r.getMessage() for r in caplog.records if "without a secret" in r.getMessage()]
    assert len(lines) == 1
    assert "'m'" in lines[0] and "'f'" in lines[0] and "'mem'" not in lines[0]
    caplog.clear()
    make_manager(config, secret="a-secret-long-enough")
    assert not [r for r in caplog.records if "without a secret" in r.getMessage()]


def test_a_short_secret_is_refused() -> None:
    with pytest.raises(regions.ConfigurationError, match="at least 16"):
        regions.CacheManager({}, secret="short")
