"""Long lifetimes on a real memcached. Up to 30 days an expiry is sent in seconds; over 30 days
memcached reads it as a Unix time, a signed 32-bit one: an expiry after 2038-01-19 03:14:07 UTC
(a TIMEOUT of about 12 years today) was taken, stored nothing, and said nothing (``sets`` counted
up, ``errors`` stayed 0). It is now capped at the latest expiry memcached takes, said once in the
log, and reported by the settings check (a warning: the region works, with entries living less).

The server's own view of each entry's lifetime is read with the meta command ``mg <key> t``.
``-s`` prints the figures: the call that first hits, per TIMEOUT.
"""

from __future__ import annotations

import logging
import socket
import time
from typing import Any

import pytest

import regions
from regions import config

DAY = 24 * 3600
YEAR = 365 * DAY
#: The latest expiry memcached takes: 2038-01-19 03:14:07 UTC.
LATEST = 2**31 - 1
STALE = 30  # the default ``stale`` window, sent with the lifetime


def ttl_on_server(address: str, key: str) -> int | None:
    """Seconds ``key`` has left on the server (``-1``: never expires), ``None`` when it holds nothing."""
    host, port = address.rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=2) as sock:
        sock.sendall(b"mg " + key.encode() + b" t\r\n")
        reply = b""
        while not reply.endswith(b"\r\n"):
            reply += sock.recv(256)
    if reply.startswith(b"EN"):
        return None
    assert reply.startswith(b"HD t"), reply
    return int(reply[4:].split()[0])


@pytest.mark.parametrize("timeout", [29 * DAY, 31 * DAY, 13 * YEAR], ids=["29-days", "31-days", "13-years"])
def test_long_timeouts_store_and_are_served(make_manager: Any, memcached_server: str, timeout: int) -> None:
    manager = make_manager({"r": {"BACKEND": "memcached", "LOCATION": memcached_server, "TIMEOUT": timeout}})
    calls = 0

    @manager.region("r")
    def value(x: int) -> int:
        nonlocal calls
        calls += 1
        return x

    hits = []
    for _ in range(5):
        before = calls
        assert value(1) == 1
        hits.append(calls == before)
    first_hit = hits.index(True) + 1 if True in hits else None
    print(f"\nTIMEOUT={timeout} s ({timeout / DAY:g} days): first hit at call {first_hit} of 5")
    assert first_hit == 2, f"calls that hit: {hits}"
    stats = manager["r"].stats()
    assert (stats["sets"], stats["errors"], stats["misses"]) == (1, 0, 1)

    region = manager["r"]
    region.set("k", "v")
    ns, key = region._direct_key("k")
    left = ttl_on_server(memcached_server, ns.wire_key(key))
    want = min(timeout + STALE, LATEST - int(time.time()))
    assert left is not None and want - 5 <= left <= want + 2, (left, want)  # the server's clock
    assert region.get("k") == "v"


def test_a_lifetime_past_2038_is_capped_and_said_once(
    make_manager: Any, memcached_server: str, caplog: pytest.LogCaptureFixture
) -> None:
    settings = {"BACKEND": "memcached", "LOCATION": memcached_server, "TIMEOUT": 13 * YEAR}
    region = make_manager({"r": settings})["r"]
    caplog.set_level(logging.WARNING, "regions")
    for i in range(20):
        region.set(("k", i), i)
    region.set("per-call", 1, timeout=40 * YEAR)  # a call's own timeout is capped the same way
    assert [region.get(("k", i)) for i in range(20)] == list(range(20))
    assert region.get("per-call") == 1
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 1, lines
    [line] = lines
    assert "region 'r'" in line and f"TIMEOUT={13 * YEAR}" in line and "2038-01-19" in line, line
    assert "None" in line, f"no remedy: {line}"


@pytest.mark.parametrize(
    ("settings", "region"),
    [
        ({"r": {"BACKEND": "memcached", "LOCATION": "127.0.0.1:1", "TIMEOUT": 13 * YEAR}}, "r"),
        ({"shared": {"BACKEND": "memcached", "LOCATION": "127.0.0.1:1"},
          "hot": {"BACKEND": "tiered", "TIMEOUT": 13 * YEAR, "OPTIONS": {"over": "shared"}}}, "hot"),
    ],
    ids=["memcached", "tiered-over-memcached"],
)
def test_the_settings_check_warns_of_a_timeout_past_2038(settings: dict[str, Any], region: str) -> None:
    [problem] = config.check(settings)
    assert (problem.id, problem.region, problem.option) == ("W010", region, "TIMEOUT")
    assert problem.level == "warning" and not problem.is_error
    assert f"TIMEOUT={13 * YEAR}" in problem.message and "2038-01-19" in problem.message
    assert "None" in problem.hint
    assert config.normalize(settings)  # usable: a warning never stops the regions
    regions.CacheManager(settings).close()


@pytest.mark.parametrize("timeout", [None, 3600, 29 * DAY, 31 * DAY, "the longest that fits"])
def test_the_settings_check_accepts_timeouts_memcached_can_keep(timeout: Any, tmp_path: Any) -> None:
    if timeout == "the longest that fits":
        timeout = LATEST - int(time.time()) - STALE - DAY
    assert config.check({"r": {"BACKEND": "memcached", "LOCATION": "127.0.0.1:1", "TIMEOUT": timeout}}) == []
    assert config.check({"r": {"BACKEND": "file", "LOCATION": tmp_path, "TIMEOUT": 13 * YEAR}}) == []
