"""Counters that hold something other than a number (written by something else under a region's
keys): tag counters, generation counters, invalidation-log counters (memcached, and the file
backend's ``seq`` file).

The garbage is planted for real, with a raw pymemcache client on the real server (raw bytes in the
file); the invalidations come from another real (spawned) process, whose pooled connections are
not made yet. A counter that holds no number is replaced, which counts as a bump and a reset:
entries carrying it miss, a log reader resets. It never blocks an invalidation, is never reported
as a server that is down, and the log line says what the server held (escaped, cut short).

``-s`` prints the figures: old values served after an invalidation made over a damaged counter,
computations while a damaged counter is in place.
"""

from __future__ import annotations

import logging
import multiprocessing
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from pymemcache.client.base import Client

from tests import counter_workers

SECRET = "counters-secret-0123456789abcdef"
#: What something else wrote: bytes that are no number, that look like protocol, and a long tail.
GARBAGE = b"\x00\xffnot a number\r\nEND\r\n" + b"#" * 500
SHOWN = "\\x00\\xffnot a number\\r\\nEND"  # how a log line shows its start, escaped
INTERVAL = 0.1


def raw_client(address: str) -> Client:
    host, port = address.rsplit(":", 1)
    return Client((host, int(port)), connect_timeout=2, timeout=2)


def in_child(config: dict[str, Any], prefix: str, op: str, arg: Any) -> tuple[Any, list[str]]:
    """Run one invalidation in a spawned process: what it returned and the warnings it logged."""
    ctx = multiprocessing.get_context("spawn")
    out = ctx.Queue()
    proc = ctx.Process(target=counter_workers.run, args=(config, prefix, SECRET, op, arg, out))
    proc.start()
    try:
        status, result, lines = out.get(timeout=60)
    finally:
        proc.join(30)
        if proc.is_alive():
            proc.kill()
    assert status == "ok", result
    return result, lines


def says_what_it_held(lines: list[str], region: str, key: str) -> str:
    """The one line (of ``lines``) about the damaged counter ``key``: it names the region and the
    key, shows what the server held (escaped, cut short) and never calls the server down."""
    found = [line for line in lines if key in line]
    assert len(found) == 1, lines
    [line] = found
    assert f"region {region!r}" in line and SHOWN in line and "not a number" in line, line
    assert "#" * 60 not in line and len(line) < 800, f"not cut short: {line}"
    assert "down" not in line and "did not answer" not in line, line
    return line


@pytest.fixture
def prefix() -> str:
    return "c" + uuid.uuid4().hex[:10]


def mc_config(address: str, **settings: Any) -> dict[str, Any]:
    options = {"sync_interval": INTERVAL}
    return {"r": {"BACKEND": "memcached", "LOCATION": address, "TIMEOUT": 3600, "OPTIONS": options,
                  **settings}}


# tag counters ------------------------------------------------------------------------------------


def test_a_tag_counter_holding_no_number_never_blocks_another_process_bump(
    make_manager: Any, memcached_server: str, prefix: str
) -> None:
    """A product edit in a fresh process bumps ``category:3`` (damaged) and ``product:7``: before,
    the first ``incr`` raised and ``product:7`` was never bumped (old price for the 1 h TIMEOUT)."""
    config = mc_config(memcached_server)
    manager = make_manager(config, key_prefix=prefix, secret=SECRET)
    prices = {7: 10}
    calls: Counter = Counter()

    @manager.region("r", tags=lambda pid: [f"product:{pid}"])
    def price(pid: int) -> int:
        calls[pid] += 1
        return prices[pid]

    assert price(7) == 10 == price(7) and calls[7] == 1
    raw = raw_client(memcached_server)
    [damaged] = manager["r"].store.tags.keys(["category:3"])
    assert raw.set(damaged, GARBAGE, noreply=False)
    prices[7] = 20  # the edit; its process bumps the tags of what it changed (sorted, as Django's signals do)
    result, lines = in_child(config, prefix, "invalidate_tags", ["category:3", "product:7"])
    served = [price(7) for _ in range(10)]
    print(f"\nold prices served after a bump over a damaged tag counter: {served.count(10)} of 10")
    assert served == [20] * 10
    assert result is True, lines
    says_what_it_held(lines, "r", damaged)
    held = raw.get(damaged)
    assert held is not None and held.isdigit(), f"not replaced by a counter: {held!r}"
    raw.close()
    assert manager["r"].stats()["errors"] == 0


def test_a_tag_counter_holding_no_number_is_replaced_by_a_read(
    make_manager: Any, memcached_server: str, prefix: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Read through the hit path: the entry misses, the counter is replaced, and logged once."""
    manager = make_manager(mc_config(memcached_server), key_prefix=prefix, secret=SECRET)
    calls: Counter = Counter()

    @manager.region("r", tags=["posts"])
    def listing(page: int) -> int:
        calls[page] += 1
        return calls[page]

    assert listing(1) == 1 == listing(1)
    raw = raw_client(memcached_server)
    [damaged] = manager["r"].store.tags.keys(["posts"])
    assert raw.set(damaged, GARBAGE, noreply=False)
    caplog.set_level(logging.WARNING, "regions")
    assert [listing(1) for _ in range(5)] == [2] * 5  # one miss, then hits under the new version
    assert manager.invalidate_tags("posts") is True
    assert listing(1) == 3
    says_what_it_held([r.getMessage() for r in caplog.records], "r", damaged)
    raw.close()


# generation counters -----------------------------------------------------------------------------


@pytest.mark.parametrize("which", ["region", "namespace"])
def test_a_generation_counter_holding_no_number_is_replaced_and_caching_resumes(
    make_manager: Any, memcached_server: str, prefix: str, which: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Before: each re-read (every ``sync_interval``) took the clock for the counter, so the region
    cached for ``sync_interval`` only, for good."""
    manager = make_manager(mc_config(memcached_server), key_prefix=prefix, secret=SECRET)
    calls: Counter = Counter()

    @manager.region("r")
    def value(x: int) -> int:
        calls[x] += 1
        return calls[x]

    assert value(1) == 1 == value(1)
    store = manager["r"].store
    [ns] = manager["r"]._namespaces.values()  # the function's namespace manager
    damaged = store.generation_key if which == "region" else ns._ns_generation_key
    raw = raw_client(memcached_server)
    assert raw.set(damaged, GARBAGE, noreply=False)
    caplog.set_level(logging.WARNING, "regions")
    end = time.monotonic() + 10 * INTERVAL
    while time.monotonic() < end:
        value(1)
        time.sleep(INTERVAL / 4)
    print(f"\ncomputations over {10 * INTERVAL:g} s with a damaged {which} counter: {calls[1] - 1}")
    assert calls[1] == 2, "a replaced counter is a bump: one miss, then hits"
    held = raw.get(damaged)
    assert held is not None and held.isdigit(), f"not replaced by a counter: {held!r}"
    says_what_it_held([r.getMessage() for r in caplog.records], "r", damaged)
    assert manager["r"].clear() is True
    assert value(1) == 3
    raw.close()


@pytest.mark.parametrize("planted", [GARBAGE, b"5"], ids=["no-number", "a-lower-number"])
def test_a_clear_in_another_process_over_a_damaged_generation_counter_holds(
    make_manager: Any, memcached_server: str, prefix: str, planted: bytes
) -> None:
    """The other process's ``incr`` finds no number (before: the clear failed, ``clear()`` said
    False), or a number below the one in use (before: this process raised the counter back to the
    value it had seen and served the entries of before the clear)."""
    config = mc_config(memcached_server)
    manager = make_manager(config, key_prefix=prefix, secret=SECRET)
    data = {"v": 1}

    @manager.region("r")
    def value(x: int) -> tuple[int, int]:
        return (x, data["v"])

    assert value(1) == (1, 1) == value(1)
    raw = raw_client(memcached_server)
    damaged = manager["r"].store.generation_key
    assert raw.set(damaged, planted, noreply=False)
    data["v"] = 2
    result, lines = in_child(config, prefix, "clear", "r")
    time.sleep(INTERVAL * 1.5)  # another process's clear reaches this one within sync_interval
    served = [value(1) for _ in range(10)]
    print(f"\nold values served after a clear over a damaged counter ({planted[:5]!r}): "
          f"{served.count((1, 1))} of 10")
    assert served == [(1, 2)] * 10
    assert result is True, lines
    if planted == GARBAGE:
        says_what_it_held(lines, "r", damaged)
    raw.close()


# invalidation logs -------------------------------------------------------------------------------


def synced_config(memcached: str, folder: Path, sync_with: str) -> dict[str, Any]:
    return {
        "functions": {"BACKEND": "memcached", "LOCATION": memcached},
        "files": {"BACKEND": "file", "LOCATION": str(folder)},
        "local": {"BACKEND": "memory", "TIMEOUT": 3600,
                  "OPTIONS": {"sync_with": sync_with, "sync_interval": INTERVAL}},
    }


def plant_in_log(manager: Any, memcached: str, sync_with: str) -> str:
    """Garbage in the log counter of region ``local``; the key or file path, as log lines name it."""
    storage = manager["local"].store.sync.log.storage
    if sync_with == "functions":
        raw = raw_client(memcached)
        assert raw.set(storage.seq_key, GARBAGE, noreply=False)
        raw.close()
        return str(storage.seq_key)
    Path(storage.seq_path).write_bytes(GARBAGE)
    return str(storage.seq_path)


@pytest.mark.parametrize("sync_with", ["functions", "files"], ids=["memcached", "file"])
def test_an_invalidation_log_counter_holding_no_number(
    make_manager: Any, memcached_server: str, tmp_path: Path, prefix: str, sync_with: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Read: the reader resets once and caching resumes (before: the log "could not be read", so
    only entries younger than ``sync_interval`` were served, for good). Appended to by another
    process's clear: it is made and reaches this process (before: the clear failed)."""
    config = synced_config(memcached_server, tmp_path / "files", sync_with)
    manager = make_manager(config, key_prefix=prefix, secret=SECRET)
    data = {"v": 1}
    calls: Counter = Counter()

    @manager.region("local")
    def value(x: int) -> tuple[int, int]:
        calls[x] += 1
        return (x, data["v"])

    assert value(1) == (1, 1) == value(1)
    time.sleep(INTERVAL * 1.5)
    value(1)  # the log was looked at: its counter exists
    caplog.set_level(logging.WARNING, "regions")
    damaged = plant_in_log(manager, memcached_server, sync_with)
    end = time.monotonic() + 10 * INTERVAL
    while time.monotonic() < end:
        assert value(1) == (1, 1)
        time.sleep(INTERVAL / 4)
    stats = manager["local"].stats()
    print(f"\ncomputations over {10 * INTERVAL:g} s with a damaged {sync_with} log counter: "
          f"{calls[1] - 1}; {stats['sync_failures']} failed looks, {stats['resets']} reset(s)")
    assert stats["sync_failures"] == 0
    assert calls[1] == 2 and stats["resets"] == 1, "a replaced log counter is one reset, then hits"
    says_what_it_held([r.getMessage() for r in caplog.records], sync_with, damaged)

    plant_in_log(manager, memcached_server, sync_with)
    data["v"] = 2
    result, lines = in_child(config, prefix, "clear", "local")
    time.sleep(INTERVAL * 1.5)
    served = [value(1) for _ in range(10)]
    print(f"old values served after another process's clear: {served.count((1, 1))} of 10")
    assert served == [(1, 2)] * 10
    assert result is True, lines
    says_what_it_held(lines, sync_with, damaged)
    assert manager["local"].clear() is True
    assert manager["local"].stats()["sync_failures"] == 0
