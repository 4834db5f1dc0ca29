"""Push invalidation (:mod:`regions.sync.push`) over a real redis-server: a synced or tiered region
over Redis applies another process's invalidation long before its next look at the log is due
(``sync_interval`` 60 s here); with ``push: False`` it does not. A forked child waits on a
connection of its own; a SIGSTOPped server, and one SIGKILLed and restarted empty on its port,
cost no exception and no old value, and the waiter comes back (after an empty restart: a reset).
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import regions
from regions import config
from tests import redis_workers as rw
from tests import sync_workers as w

#: Far above what a push takes (milliseconds), far below ``sync_interval``: no look is due before.
DEADLINE = 20.0
LONG = 60.0


def _settings(url: str, backend: str, interval: float, **extra: Any) -> dict[str, Any]:
    link = {"sync_with": "r"} if backend == "memory" else {"over": "r"}
    local = {"BACKEND": backend, "TIMEOUT": 300, "OPTIONS": {**link, "sync_interval": interval, **extra}}
    shared = {"BACKEND": "redis", "LOCATION": url, "TIMEOUT": 300,
              "OPTIONS": {"socket_timeout": 0.3, "connect_timeout": 0.3, "retry_interval": 0.1}}
    return {"config": {"r": shared, "local": local},
            "prefix": "p" + uuid.uuid4().hex[:8], "secret": "p-" + uuid.uuid4().hex}


def _until(condition: Callable[[], bool], deadline: float = DEADLINE) -> bool:
    end = time.monotonic() + deadline
    while not condition():
        if time.monotonic() > end:
            return False
        time.sleep(0.005)
    return True


def _invalidate_elsewhere(settings: dict[str, Any], data: str, x: int) -> None:
    proc = multiprocessing.get_context("spawn").Process(
        target=rw.invalidate_once, args=(settings, data, x, "local")
    )
    proc.start()
    proc.join(60)
    assert proc.exitcode == 0


@pytest.mark.parametrize("backend", ["memory", "tiered"])
@pytest.mark.parametrize("push", [True, False])
def test_another_process_invalidate_arrives_before_the_next_look(
    redis_server: str, tmp_path: Path, backend: str, push: bool
) -> None:
    data = str(tmp_path / "data.txt")
    w.write_version(data, 1)
    settings = _settings(redis_server, backend, LONG, push=push)
    manager = rw.build(settings)
    try:
        region = manager["local"]
        value = rw.make_reader(manager, data, region="local")
        assert value(1) == value(1) == (1, 1)  # the first call looked at the log (the next: in 60 s)
        assert region.store.sync.pushes is push
        if push:
            assert _until(lambda: region.stats()["push_up"]), region.stats()
        w.write_version(data, 2)
        _invalidate_elsewhere(settings, data, 1)
        if push:  # B never called meanwhile: only the waker can have applied it
            assert _until(lambda: region.stats()["received_invalidations"] >= 1), region.stats()
            assert value(1) == (1, 2)
            stats = region.stats()
            assert stats["pushed"] >= 1 and stats["sync_failures"] == 0 and stats["resets"] == 0, stats
        else:  # polling only: the old value until the next look, 60 s after the first
            time.sleep(0.5)
            assert value(1) == (1, 1)
            assert region.stats()["received_invalidations"] == 0 and "pushed" not in region.stats()
    finally:
        manager.close()


def test_the_waker_ends_when_the_manager_closes(redis_server: str, tmp_path: Path) -> None:
    data = str(tmp_path / "data.txt")
    w.write_version(data, 1)
    manager = rw.build(_settings(redis_server, "memory", LONG))
    value = rw.make_reader(manager, data, region="local")
    assert value(1) == (1, 1)
    sync = manager["local"].store.sync
    assert _until(lambda: sync.stats()["push_up"])
    thread = sync._waker.thread
    assert thread.is_alive() and thread.daemon
    manager.close()
    thread.join(DEADLINE)  # after its current wait
    assert not thread.is_alive()
    assert sync.log is not None and sync.log.storage._waiting is None  # its connection closed


def test_a_forked_child_waits_on_a_connection_of_its_own(redis_server: str, tmp_path: Path) -> None:
    data = str(tmp_path / "data.txt")
    w.write_version(data, 1)
    settings = _settings(redis_server, "memory", LONG)
    manager = rw.build(settings)
    try:
        region = manager["local"]
        value = rw.make_reader(manager, data, region="local")
        assert value(1) == (1, 1) and value(2) == (2, 1)
        assert _until(lambda: region.stats()["push_up"])
        storage = region.store.sync.log.storage
        parent_client = storage._waiting
        to_child_r, to_child_w = os.pipe()
        from_child_r, from_child_w = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child
            code = 1
            try:
                os.close(to_child_w)
                os.close(from_child_r)
                ok = value(1) == (1, 1)  # its first call looks, and starts its own waker
                ok = ok and _until(lambda: region.stats()["push_up"])
                mine = region.store.sync._waker.pid == os.getpid() and storage._waiting_pid == os.getpid()
                own_connection = storage._waiting is not parent_client
                os.write(from_child_w, b"ready")
                os.read(to_child_r, 1)  # the parent invalidated 1
                got = _until(lambda: region.stats()["received_invalidations"] >= 1)
                new = value(1)
                assert value.invalidate(2) is True  # for the parent's waker
                os.write(from_child_w, f" {ok} {mine} {own_connection} {got} {new[1]}".encode())
                code = 0
            finally:
                os._exit(code)
        os.close(to_child_r)
        os.close(from_child_w)
        assert os.read(from_child_r, 5) == b"ready"
        w.write_version(data, 2)
        assert value.invalidate(1) is True  # the parent's own record: the child's is another origin
        os.write(to_child_w, b"x")
        with os.fdopen(from_child_r) as pipe:
            report = pipe.read()
        _, status = os.waitpid(pid, 0)
        os.close(to_child_w)
        assert os.WEXITSTATUS(status) == 0 and report.split() == ["True", "True", "True", "True", "2"], report
        # the parent's waiter is untouched by the child: it receives the child's invalidation
        assert _until(lambda: region.stats()["received_invalidations"] >= 1), region.stats()
        assert value(2) == (2, 2) and storage._waiting is parent_client
    finally:
        manager.close()


# faults -----------------------------------------------------------------------------------------


class _Caller:
    """Calls ``value(1)`` in a loop on a thread: every exception and every result kept."""

    def __init__(self, value: Callable[[int], tuple[int, int]]) -> None:
        self.value = value
        self.results: list[tuple[float, tuple[int, int]]] = []
        self.errors: list[BaseException] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self.stop.is_set():
            try:
                self.results.append((time.monotonic(), self.value(1)))
            except BaseException as exc:  # noqa: BLE001
                self.errors.append(exc)
            time.sleep(0.002)

    def close(self) -> None:
        self.stop.set()
        self.thread.join(10)


@pytest.mark.parametrize("backend", ["memory", "tiered"])
def test_a_stopped_server_costs_no_exception_and_no_old_value(
    redis_factory: Any, tmp_path: Path, backend: str, caplog: pytest.LogCaptureFixture
) -> None:
    """SIGSTOP while subscribed: calls go on (polling's degraded mode: old local entries are not
    served); an invalidation made meanwhile is replayed and pushed once the server answers again."""
    server = redis_factory()
    data = str(tmp_path / "data.txt")
    w.write_version(data, 1)
    interval = 0.3
    settings = _settings(server.url, backend, interval)
    manager, writer = rw.build(settings), rw.build(settings)  # two origins: the writer is "another"
    caller = None
    try:
        region = manager["local"]
        value = rw.make_reader(manager, data, region="local")
        invalidate = rw.make_reader(writer, data, region="local").invalidate
        assert value(1) == (1, 1)
        assert _until(lambda: region.stats()["push_up"])
        caller = _Caller(value)
        with caplog.at_level(logging.WARNING, logger="regions"):
            os.kill(server.proc.pid, signal.SIGSTOP)
            try:
                assert _until(lambda: not region.stats()["push_up"]), region.stats()
                w.write_version(data, 2)
                invalidate(1)  # the server is down: kept, replayed when it answers
                changed = time.monotonic()
                time.sleep(interval * 3)
            finally:
                os.kill(server.proc.pid, signal.SIGCONT)
            assert _until(lambda: region.stats()["push_up"]), region.stats()
            assert _until(lambda: value(1) == (1, 2))
        caller.close()
        assert caller.errors == []
        # the old value only within one interval of the change (the degraded mode's bound)
        old = [t - changed for t, got in caller.results if got == (1, 1) and t > changed + interval + 0.2]
        assert old == [], old[:5]
        stats = region.stats()
        assert stats["push_failures"] >= 1 and stats["sync_failures"] >= 1, stats
        lines = [r for r in caplog.records if "waiting for invalidations failed" in r.getMessage()]
        assert len(lines) <= 1  # the server's outage is said by its breaker; the waker adds at most one
    finally:
        if caller is not None:
            caller.close()
        manager.close()
        writer.close()


@pytest.mark.parametrize("backend", ["memory", "tiered"])
def test_a_server_restarted_empty_resets_the_local_tier_by_push(
    redis_factory: Any, tmp_path: Path, backend: str
) -> None:
    """SIGKILL, then a new server on the same port with nothing in it: the log's stream is gone.
    The waker reconnects and looks at once: the counter went back, a gap, the local tier reset,
    long before the next look on a call is due (60 s)."""
    from tests.conftest import RedisServer

    server = redis_factory()
    data = str(tmp_path / "data.txt")
    w.write_version(data, 1)
    settings = _settings(server.url, backend, LONG)
    manager = rw.build(settings)
    try:
        region = manager["local"]
        value = rw.make_reader(manager, data, region="local")
        assert value(1) == (1, 1) and value(1) == (1, 1)
        assert _until(lambda: region.stats()["push_up"])
        server.proc.kill()
        server.proc.wait(5)
        assert _until(lambda: not region.stats()["push_up"]), region.stats()
        w.write_version(data, 2)  # changed while the server was away: nobody could log it
        again = RedisServer(port=server.port)
        try:
            assert _until(lambda: region.stats()["resets"] >= 1), region.stats()
            assert region.stats()["push_up"] is True
            assert value(1) == (1, 2)  # the local tier was dropped: read anew
        finally:
            again.stop()
    finally:
        manager.close()


# settings -------------------------------------------------------------------------------------------


def test_push_is_checked_against_what_it_links_to(memcached_server: str, redis_server: str) -> None:
    settings = {
        "mc": {"BACKEND": "memcached", "LOCATION": memcached_server},
        "rd": {"BACKEND": "redis", "LOCATION": redis_server},
        "plain": {"BACKEND": "memory", "OPTIONS": {"push": False}},
        "polled": {"BACKEND": "memory", "OPTIONS": {"sync_with": "mc", "push": True}},
        "hot": {"BACKEND": "tiered", "OPTIONS": {"over": "mc", "push": True}},
        "pushed": {"BACKEND": "memory", "OPTIONS": {"sync_with": "rd", "push": True}},
        "quiet": {"BACKEND": "tiered", "OPTIONS": {"over": "mc", "push": False}},
        "typo": {"BACKEND": "memory", "OPTIONS": {"sync_with": "rd", "push": "no"}},
    }
    found = {(p.id, p.region) for p in config.check(settings)}
    assert found == {("E005", "plain"), ("W011", "polled"), ("W011", "hot"), ("E005", "typo")}, found
    problems = {p.region: p for p in config.check(settings)}
    assert "sync_with" in problems["plain"].hint and "redis" in problems["polled"].hint
    assert "memcached" in problems["hot"].message
    with pytest.raises(regions.errors.ConfigurationError) as info:
        regions.CacheManager({"plain": settings["plain"]})
    assert info.value.region == "plain" and info.value.option == "OPTIONS.push"
