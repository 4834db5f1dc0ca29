"""Faults made for real: memcached and redis-server processes paused (SIGSTOP), killed (SIGKILL),
restarted on the same port, or started late. ``faulty_memcached()`` / ``faulty_redis()`` start one;
every one is stopped after the test.
"""

from __future__ import annotations

import itertools
import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import (
    MemcachedServer,
    RedisServer,
    ServerProcess,
    _answers,
    _redis_answers,
    free_port,
    made_for_the_test,
)
from tests.faults.proxy import Proxy


class Faults(ServerProcess):
    """The faults of a server process: SIGSTOP, SIGCONT, SIGKILL. A faulty server is one of these
    and its server class (``class FaultyMemcached(Faults, MemcachedServer)``); ``start`` (on the
    same port) and ``answers`` are each server's own."""

    #: the server's name in a failure message
    name = "server"
    paused: bool

    def pause(self) -> None:
        """SIGSTOP: the socket still accepts connections, nothing answers (a hung server).

        Returns once every thread of the server is stopped (the signal is delivered asynchronously:
        a command sent right after ``kill`` could still be answered)."""
        os.kill(self.proc.pid, signal.SIGSTOP)
        self.paused = True
        deadline = time.monotonic() + 5
        while not all_threads_stopped(self.proc.pid):
            assert time.monotonic() < deadline, (
                f"{self.name} {self.address} did not stop within 5 s of SIGSTOP"
            )
            time.sleep(0.001)

    def resume(self) -> None:
        os.kill(self.proc.pid, signal.SIGCONT)
        self.paused = False

    def kill(self) -> None:
        """SIGKILL: connections are reset, new ones refused (and memcached loses every item)."""
        if self.paused:
            self.resume()
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=5)

    def stop(self) -> None:
        if self.paused:
            self.resume()
        super().stop()

    def start(self) -> None:
        """(Re)start on the same port."""
        raise NotImplementedError

    def answers(self) -> bool:
        raise NotImplementedError


class FaultyMemcached(Faults, MemcachedServer):
    """A real memcached whose process the test pauses, kills and restarts (same port each time)."""

    name = "memcached"

    def __init__(self, memory_mb: int = 64, *, started: bool = True) -> None:
        self.memory_mb = memory_mb
        self.paused = False
        if started:
            super().__init__(memory_mb=memory_mb)
        else:  # the address is reserved but nothing listens yet: "start with the server down"
            self.port = free_port()
            self.address = f"127.0.0.1:{self.port}"
            self.proc = subprocess.Popen(["true"])
            self.proc.wait()

    def start(self) -> None:
        """(Re)start on the same port, empty."""
        MemcachedServer.__init__(self, memory_mb=self.memory_mb, port=self.port)

    def answers(self) -> bool:
        return _answers(self.port)


def all_threads_stopped(pid: int) -> bool:
    """Whether every thread of ``pid`` is in the stopped state (``T`` in /proc)."""
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
        states = [Path(f"/proc/{pid}/task/{t}/stat").read_text().rsplit(")", 1)[1].split()[0] for t in tasks]
    except OSError:
        return True  # gone: nothing answers
    return all(state in ("T", "t") for state in states)


@pytest.fixture
def faulty_memcached() -> Iterator[Callable[..., FaultyMemcached]]:
    """Factory of :class:`FaultyMemcached`; ``faulty_memcached(started=False)`` reserves a port only."""
    yield from made_for_the_test(FaultyMemcached, FaultyMemcached.stop)


class FaultyRedis(Faults, RedisServer):
    """A real redis-server the test pauses, kills and restarts on the same port.

    Its files (a replica's copy of its master's dataset, the append-only file) go to ``folder``.
    ``persist=True``: an append-only file fsynced on every write, so a restart after SIGKILL loads
    the dataset it had (entries, and the deletes that reached it); otherwise a restart is empty."""

    name = "redis-server"

    def __init__(self, folder: Path, *, persist: bool = False) -> None:
        self.folder = folder
        self.persist = persist
        self.paused = False
        super().__init__(extra_args=self._args())

    def _args(self) -> tuple[str, ...]:
        self.folder.mkdir(parents=True, exist_ok=True)
        args = ("--dir", str(self.folder))
        return (*args, "--appendonly", "yes", "--appendfsync", "always") if self.persist else args

    def start(self) -> None:
        """(Re)start on the same port: empty, or with the persisted dataset."""
        RedisServer.__init__(self, extra_args=self._args(), port=self.port)

    def answers(self) -> bool:
        return _redis_answers(self.port)


@pytest.fixture
def faulty_redis(tmp_path: Path) -> Iterator[Callable[..., FaultyRedis]]:
    """Factory of :class:`FaultyRedis`: ``faulty_redis()``, ``faulty_redis(persist=True)``; each
    one's files in a folder of the test's own."""
    folders = (tmp_path / f"redis-{i}" for i in itertools.count())

    def build(**kwargs: Any) -> FaultyRedis:
        return FaultyRedis(next(folders), **kwargs)

    yield from made_for_the_test(build, FaultyRedis.stop)


@pytest.fixture
def proxy() -> Iterator[Callable[[str], Proxy]]:
    """``proxy(target_address)`` -> a :class:`Proxy` to it; every one is closed after the test."""
    yield from made_for_the_test(Proxy, Proxy.close)
