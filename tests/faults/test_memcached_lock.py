"""The memcached lock key (``distributed_lock``, and every read-modify-write's update lock) against a
real memcached: a release frees only its own holder's lock, and neither a release the server did
not get nor a take it applied late (a SIGSTOPped server runs what it received when it resumes)
leaves the key locked for ``lock_timeout`` by nobody: both are replayed when the server is back."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest
from pymemcache.client.base import Client

from regions.errors import BackendUnavailable
from tests.conftest import probe_until
from tests.faults.conftest import FaultyMemcached

OPTIONS = {"timeout": 0.3, "connect_timeout": 0.3, "retry_interval": 0.1, "lock_timeout": 60,
           "distributed_lock": True}


def lock_of(manager: Any, key: str) -> Any:
    lock = manager["r"].namespace("locked").shared_lock(key)
    assert lock is not None, "no lock: the node is down"
    return lock


def raw(address: str) -> Client:
    host, port = address.rsplit(":", 1)
    return Client((host, int(port)), connect_timeout=2, timeout=2)


def wait_until_replayed(manager: Any, address: str, name: str) -> None:
    """Until the breaker is up and the lock key gone (or 20 s)."""
    node = manager["r"].store.nodes.all[0]
    probe_until(manager, "r", lambda: not node.breaker.down and raw(address).get(name) is None)
    assert node.breaker.down is False, "the server never came back"


def test_a_release_frees_only_its_own_holder_s_lock(
    faulty_memcached: Callable[..., FaultyMemcached], make_manager: Any
) -> None:
    server = faulty_memcached()
    manager = make_manager({"r": {"BACKEND": "memcached", "LOCATION": server.address, "OPTIONS": OPTIONS}})
    first = lock_of(manager, "k")
    assert first.acquire(0) is True
    assert lock_of(manager, "k").acquire(0) is False, "two holders at once"
    # the first holder outlived lock_timeout: its lock expired
    raw(server.address).delete(first.name, noreply=False)
    second = lock_of(manager, "k")
    assert second.acquire(0) is True
    first.release()  # late: must leave the second holder's lock alone
    assert raw(server.address).get(first.name) is not None, "a late release freed another holder's lock"
    second.release()
    assert raw(server.address).get(first.name) is None
    assert lock_of(manager, "k").acquire(0) is True


def test_a_take_the_server_did_not_answer_is_released_when_it_is_back(
    faulty_memcached: Callable[..., FaultyMemcached], make_manager: Any
) -> None:
    server = faulty_memcached()
    manager = make_manager({"r": {"BACKEND": "memcached", "LOCATION": server.address, "OPTIONS": OPTIONS}})
    lock = lock_of(manager, "k")
    manager["r"].namespace("probe").get_entry("k")  # a pooled connection made while it answers
    server.pause()
    try:
        with pytest.raises(Exception):  # noqa: B017 (what pymemcache raises on a timeout)
            lock.acquire(0)
    finally:
        server.resume()
    deadline = time.monotonic() + 5
    while raw(server.address).get(lock.name) is None and time.monotonic() < deadline:
        time.sleep(0.01)  # the server applies the take it held once it runs again
    assert raw(server.address).get(lock.name) is not None, "the resumed server did not apply the take"
    wait_until_replayed(manager, server.address, lock.name)
    assert raw(server.address).get(lock.name) is None, "the take the server applied late still holds the lock"
    assert lock_of(manager, "k").acquire(0) is True  # the next caller takes it at once


def test_a_release_that_fails_is_replayed_when_the_server_is_back(
    faulty_memcached: Callable[..., FaultyMemcached], make_manager: Any
) -> None:
    server = faulty_memcached()
    manager = make_manager({"r": {"BACKEND": "memcached", "LOCATION": server.address, "OPTIONS": OPTIONS}})
    lock = lock_of(manager, "k")
    assert lock.acquire(0) is True
    server.pause()
    try:
        with pytest.raises(Exception):  # noqa: B017
            manager["r"].namespace("probe").get_entry("k")  # times out: the server is marked down
        with pytest.raises(BackendUnavailable):
            lock.release()  # not sent
    finally:
        server.resume()
    assert raw(server.address).get(lock.name) is not None  # still held: the release did not arrive
    wait_until_replayed(manager, server.address, lock.name)
    assert raw(server.address).get(lock.name) is None, "the failed release was not replayed"
    assert lock_of(manager, "k").acquire(0) is True
