"""Shared fixtures for the core test-suite: real memcached servers, file roots, region configs.

Everything here talks to real things: a real ``memcached`` binary on a free loopback port and
real directories under ``tmp_path``.  Nothing is mocked.
"""

from __future__ import annotations

import fcntl
import os
import random
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest

from regions.testing import CallCounter

MEMCACHED_HELP = (
    "the `memcached` binary is required by the test-suite (the tests run against a real server). "
    "Install it with `apt-get install -y memcached` (Debian/Ubuntu) and make sure it is on PATH."
)

BACKENDS = ("memcached", "file", "request", "memory")  # (redis: tests/test_redis.py, the contract)

#: A test's forked child (``os.fork()``, multiprocessing's fork context) that hangs would outlive
#: its test, holding the test's pipes, out of pytest-timeout's reach: a fork does not inherit a
#: pending alarm. Each child gets one of its own, a little shorter than a test's timeout.
FORKED_CHILD_SECONDS = 100
os.register_at_fork(after_in_child=lambda: signal.alarm(FORKED_CHILD_SECONDS))


#: Where test servers listen: below the kernel's ephemeral range (``ip_local_port_range``, from
#: 32768 on Linux), so no client socket and no ``bind(0)`` elsewhere is ever handed one of them.
PORTS = range(20_000, 32_000)
#: Open, locked files reserving this process's ports (see :func:`free_port`); closed at its exit.
_RESERVED: list[int] = []
_RANDOM = random.SystemRandom()


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now, and that no other process running these
    tests (an xdist worker, another run) is given while this one lives.

    Each port is reserved by an exclusive ``flock`` on ``<tmp>/regions-test-ports/<port>``, held
    until the process exits, and taken from :data:`PORTS`: a server killed and restarted on its
    port finds it free, and a dead address (nothing listens) stays dead, however many workers run.
    """
    folder = os.path.join(tempfile.gettempdir(), "regions-test-ports")
    os.makedirs(folder, exist_ok=True)
    start = _RANDOM.randrange(len(PORTS))  # the OS's: tests seed the module's generator
    for i in range(len(PORTS)):
        port = PORTS[(start + i) % len(PORTS)]
        fd = os.open(os.path.join(folder, str(port)), os.O_CREAT | os.O_RDWR, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
                sock.bind(("127.0.0.1", port))  # something outside these tests may hold it
        except OSError:
            os.close(fd)
            continue
        _RESERVED.append(fd)
        return port
    raise RuntimeError(f"no free port left in {PORTS} for the test servers")


def _answers(port: int, pid: int | None = None) -> bool:
    """Whether memcached answers on ``port`` (and, given ``pid``, whether it is that process)."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock:
            if pid is None:
                sock.sendall(b"version\r\n")
                return sock.recv(64).startswith(b"VERSION")
            sock.sendall(b"stats\r\n")
            reply = b""
            while not reply.endswith(b"END\r\n"):
                chunk = sock.recv(65536)
                if not chunk:
                    return False
                reply += chunk
            return f"STAT pid {pid}\r\n".encode() in reply
    except OSError:
        return False


T = TypeVar("T")


def made_for_the_test(build: Callable[..., T], finish: Callable[[T], Any]) -> Iterator[Callable[..., T]]:
    """The body of a factory fixture (``yield from`` it): yields ``make``, which calls ``build`` and
    keeps what it returns; after the test, ``finish`` is called on each one, in order."""
    made: list[T] = []

    def make(*args: Any, **kwargs: Any) -> T:
        made.append(build(*args, **kwargs))
        return made[-1]

    yield make
    for thing in made:
        finish(thing)


class ServerProcess:
    """A real server process on 127.0.0.1: started by :meth:`launch`, which returns once it answers
    (or fails the test with the server's own words), and killed by :meth:`stop`."""

    port: int
    address: str
    proc: subprocess.Popen[bytes]

    def launch(self, name: str, args: list[str], answers: Callable[[], bool]) -> None:
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 10
        while not answers():
            if self.proc.poll() is not None:
                err = self.proc.stderr.read().decode(errors="replace") if self.proc.stderr else ""
                pytest.fail(f"{name} exited with {self.proc.returncode}: {err}", pytrace=False)
            if time.monotonic() > deadline:
                self.stop()
                pytest.fail(f"{name} on {self.address} did not answer within 10 s", pytrace=False)
            time.sleep(0.02)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()  # its data are throw-away; SIGTERM costs memcached about 1 s to exit
            self.proc.wait(timeout=5)
        if self.proc.stderr:
            self.proc.stderr.close()


class MemcachedServer(ServerProcess):
    """A real memcached process bound to 127.0.0.1 on a free port."""

    def __init__(self, memory_mb: int = 64, extra_args: tuple[str, ...] = (), port: int | None = None):
        binary = shutil.which("memcached")
        if binary is None:
            pytest.fail(MEMCACHED_HELP, pytrace=False)
        self.port = port or free_port()
        self.address = f"127.0.0.1:{self.port}"
        args = [binary, "-l", "127.0.0.1", "-p", str(self.port), "-U", "0", "-m", str(memory_mb)]
        if os.geteuid() == 0:
            args += ["-u", "root"]
        args += list(extra_args)
        # this server, not another on the port
        self.launch("memcached", args, lambda: _answers(self.port, self.proc.pid))


def memcached_stats_of(address: str) -> dict[str, object]:
    """``stats`` of one server as a dict of str -> int/float/str (pymemcache's Client.stats())."""
    from pymemcache.client.base import Client

    host, port = address.rsplit(":", 1)
    client = Client((host, int(port)), connect_timeout=2, timeout=2)
    try:
        raw = client.stats()
    finally:
        client.close()
    out: dict[str, object] = {}
    for key, value in raw.items():
        name = key.decode() if isinstance(key, bytes) else str(key)
        if isinstance(value, bytes):
            value = value.decode()
        out[name] = value
    return out


@pytest.fixture(scope="session")
def memcached_server():
    """Address ("127.0.0.1:PORT") of a real memcached started for the whole session."""
    server = MemcachedServer()
    try:
        yield server.address
    finally:
        server.stop()


@pytest.fixture
def memcached_factory():
    """Start extra memcached servers for one test: ``srv = memcached_factory()``; all stopped after."""
    yield from made_for_the_test(MemcachedServer, MemcachedServer.stop)


REDIS_HELP = (
    "the `redis-server` binary is required by the test-suite (the tests run against a real server). "
    "Install it with `apt-get install -y redis-server` (Debian/Ubuntu); scripts/test does."
)


def _redis_answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(64).startswith(b"+PONG")
    except OSError:
        return False


class RedisServer(ServerProcess):
    """A real redis-server bound to 127.0.0.1 on a free port, no config file, nothing saved."""

    def __init__(self, extra_args: tuple[str, ...] = (), port: int | None = None):
        binary = shutil.which("redis-server") or "/usr/bin/redis-server"
        if not os.path.exists(binary):
            pytest.fail(REDIS_HELP, pytrace=False)
        self.port = port or free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.url = f"redis://{self.address}/0"
        args = [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                *extra_args]
        self.launch("redis-server", args, lambda: _redis_answers(self.port))


@pytest.fixture(scope="session")
def redis_server():
    """URL ("redis://127.0.0.1:PORT/0") of a real redis-server started for the whole session."""
    server = RedisServer()
    try:
        yield server.url
    finally:
        server.stop()


@pytest.fixture
def redis_factory():
    """Start extra redis-servers for one test: ``srv = redis_factory()`` (``srv.url``); all stopped after."""
    yield from made_for_the_test(RedisServer, RedisServer.stop)


@pytest.fixture
def dead_address():
    """"127.0.0.1:PORT" where nothing listens (connections are refused at once)."""
    return f"127.0.0.1:{free_port()}"


@pytest.fixture
def memcached_stats(memcached_server):
    """``memcached_stats()`` -> stats dict of the session server; ``memcached_stats(addr)`` for another."""

    def stats(address: str | None = None) -> dict[str, object]:
        return memcached_stats_of(address or memcached_server)

    return stats


@pytest.fixture
def cache_root(tmp_path):
    """A fresh directory for file regions."""
    path = tmp_path / "cache"
    path.mkdir()
    return path


@pytest.fixture
def region_config(request, tmp_path):
    """Factory: ``region_config("file", TIMEOUT=1, OPTIONS={...})`` -> one region's settings dict.

    memcached (redis) regions point at the session server (started lazily, only when asked for) unless
    LOCATION is given; file regions get a fresh directory unless LOCATION is given.
    """
    counter = iter(range(1_000_000))

    def make(backend: str, **settings) -> dict:
        conf: dict = {"BACKEND": backend}
        if backend == "memcached" and "LOCATION" not in settings:
            conf["LOCATION"] = request.getfixturevalue("memcached_server")
        elif backend == "redis" and "LOCATION" not in settings:
            conf["LOCATION"] = request.getfixturevalue("redis_server")
        elif backend == "file" and "LOCATION" not in settings:
            path = tmp_path / f"files-{next(counter)}"
            conf["LOCATION"] = str(path)
        conf.update(settings)
        return conf

    return make


@pytest.fixture
def make_manager():
    """Factory building ``regions.CacheManager`` objects that are closed after the test.

    Each manager gets a unique key_prefix so tests sharing the session memcached never see each
    other's entries (pass ``key_prefix=...`` to share one on purpose), and the test's secret
    (``secret=None``: unsigned).
    """
    import regions

    secret = "test-secret-" + uuid.uuid4().hex

    managers = []

    def make(config: dict, **kwargs):
        kwargs.setdefault("key_prefix", "t" + uuid.uuid4().hex[:10])
        kwargs.setdefault("secret", secret)  # signed, as in production; one secret per test
        manager = regions.CacheManager(config, **kwargs)
        managers.append(manager)
        return manager

    yield make
    for manager in managers:
        manager.close()


@pytest.fixture
def counter():
    return CallCounter()


def pause(pid: int, deadline: float = 10.0) -> None:
    """SIGSTOP ``pid`` and wait until every thread of it is stopped: the signal is delivered
    asynchronously, so a request sent right after ``kill`` may still be answered."""
    os.kill(pid, signal.SIGSTOP)
    give_up = time.monotonic() + deadline
    while time.monotonic() < give_up:
        try:
            tasks = os.listdir(f"/proc/{pid}/task")
            stats = [Path(f"/proc/{pid}/task/{t}/stat").read_text() for t in tasks]
            states = [stat.rsplit(")", 1)[1].split()[0] for stat in stats]
        except OSError:
            return  # gone: nothing answers
        if all(state in ("T", "t") for state in states):
            return
        time.sleep(0.001)
    raise AssertionError(f"process {pid} did not stop within {deadline} s of SIGSTOP")


def probe_until(manager: Any, region: str, settled: Callable[[], bool], seconds: float = 20.0) -> None:
    """Read ``region`` (each read lets its server's breaker probe) until ``settled()`` holds, or
    ``seconds`` pass: the caller asserts what it waited for."""
    deadline = time.monotonic() + seconds
    while not settled() and time.monotonic() < deadline:
        try:
            manager[region].namespace("probe").get_entry("k")
        except Exception:  # noqa: BLE001 (down until the probe answers)
            pass
        time.sleep(0.05)


class FakeClock:
    """``time.time`` for one test: the real clock, plus the seconds the test moved it on by.

    It still runs (threads and timeouts behave as usual); :meth:`advance` makes entries stored so far
    that much older at once, instead of a sleep. Only for storage judged by this process's clock
    (memory, file, request): memcached ages its items by the server's own clock.
    """

    def __init__(self, real: Callable[[], float]) -> None:
        self.real = real
        self.offset = 0.0

    def __call__(self) -> float:
        return self.real() + self.offset

    def advance(self, seconds: float) -> None:
        self.offset += seconds


@pytest.fixture
def fake_clock(monkeypatch: pytest.MonkeyPatch) -> FakeClock:
    """A :class:`FakeClock` in place of ``time.time`` for the test. Ask for it before building the
    manager and decorating functions (the decorator's hit path keeps the ``time.time`` it found)."""
    clock = FakeClock(time.time)
    monkeypatch.setattr(time, "time", clock)
    return clock

