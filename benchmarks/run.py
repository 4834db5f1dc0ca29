"""Hit-path benchmarks for regions, as ratios against floors measured in the same run.

    python benchmarks/run.py            # full run (about a minute)
    python benchmarks/run.py --quick    # a few seconds: smoke test that everything runs
    python benchmarks/run.py --json out.json

Starts its own memcached on a free loopback port. Each group's cases are measured in interleaved
rounds (A, B, C, then C, B, A, ...); each round times one batch of calls per case. The table shows
the median time per call and the median of the per-round ratios to the group's floor. Always exits
0: the verdicts are information for a person, not a gate. See benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import functools
import gc
import itertools
import json
import os
import pickle
import platform
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent

# A realistic cached value: a small list of records, about 1 KB pickled.
PAYLOAD = [{"id": i, "name": f"item {i}", "price": i * 1.25, "tags": ["a", "b", "c"]} for i in range(16)]


# ---------------------------------------------------------------------------------------------
# memcached


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Memcached:
    """A private memcached on a free loopback port; ``threads``: its worker threads (``-t``)."""

    def __init__(self, threads: int | None = None) -> None:
        binary = shutil.which("memcached")
        if binary is None:
            sys.exit("memcached is not installed: apt-get install -y memcached")
        self.port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.server = ("127.0.0.1", self.port)
        self.threads = threads
        args = [binary, "-l", "127.0.0.1", "-p", str(self.port), "-U", "0", "-m", "128"]
        if threads is not None:
            args += ["-t", str(threads)]
        if os.geteuid() == 0:
            args += ["-u", "root"]
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while True:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as sock:
                    sock.sendall(b"version\r\n")
                    if sock.recv(64).startswith(b"VERSION"):
                        break
            except OSError:
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                sys.exit(f"memcached did not start on {self.address}")
            time.sleep(0.02)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


class RedisServer:
    """A private redis-server on a free loopback port, no config file, nothing saved."""

    def __init__(self) -> None:
        binary = shutil.which("redis-server") or "/usr/bin/redis-server"
        if not os.path.exists(binary):
            sys.exit("redis-server is not installed: apt-get install -y redis-server")
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.proc = subprocess.Popen(
            [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while True:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as sock:
                    sock.sendall(b"PING\r\n")
                    if sock.recv(64).startswith(b"+PONG"):
                        break
            except OSError:
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                sys.exit(f"redis-server did not start on port {self.port}")
            time.sleep(0.02)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def memcached_version() -> str:
    try:
        out = subprocess.run(["memcached", "-V"], capture_output=True, text=True, timeout=5).stdout
        return out.strip()
    except (OSError, subprocess.SubprocessError):
        return "memcached ?"


# ---------------------------------------------------------------------------------------------
# measuring


@dataclass
class Case:
    name: str
    call: Callable[[], object]
    target: float | None = None  # max ratio to the floor, when the case has a target
    note: str = ""  # the target column of a case without a target ("reference" when empty)
    per_call_ns: list[float] = field(default_factory=list)
    ratios: list[float] = field(default_factory=list)
    batch: int = 0
    #: An event loop: ``call()`` then returns an awaitable, awaited in a coroutine on this loop
    #: (the batch loop runs inside that coroutine, so only the awaits are timed, not the loop's start).
    loop: Any = None


@dataclass
class Group:
    title: str
    floor: Case
    cases: list[Case]
    extra: list[tuple[str, str, str, float, float | None]] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    #: (region, case name): the region's stats must show hits only (see check_hits)
    checks: list[tuple[Any, str]] = field(default_factory=list)
    #: more JSON rows (figures that are not timings)
    data: list[dict] = field(default_factory=list)

    @property
    def all(self) -> list[Case]:
        return [self.floor, *self.cases]


def calibrate(call: Callable[[], object], seconds: float) -> int:
    """Number of calls that take about ``seconds`` (best of three probes, so one stall does not
    shrink the batch)."""
    n = 1
    while True:
        start = time.perf_counter()
        for _ in range(n):
            call()
        elapsed = time.perf_counter() - start
        if elapsed >= seconds / 10 or n >= 1 << 22:
            break
        n *= 4
    best = elapsed
    for _ in range(2):
        start = time.perf_counter()
        for _ in range(n):
            call()
        best = min(best, time.perf_counter() - start)
    return max(1, int(n * seconds / max(best, 1e-9)))


def time_batch(call: Callable[[], object], n: int) -> float:
    """Nanoseconds per call over ``n`` calls (garbage collector off, as timeit does)."""
    gc_was_on = gc.isenabled()
    gc.disable()
    try:
        start = time.perf_counter_ns()
        for _ in range(n):
            call()
        return (time.perf_counter_ns() - start) / n
    finally:
        if gc_was_on:
            gc.enable()


async def atime_batch(call: Callable[[], Any], n: int) -> float:
    """:func:`time_batch` for a ``call`` returning an awaitable: awaited ``n`` times in a row."""
    gc_was_on = gc.isenabled()
    gc.disable()
    try:
        start = time.perf_counter_ns()
        for _ in range(n):
            await call()
        return (time.perf_counter_ns() - start) / n
    finally:
        if gc_was_on:
            gc.enable()


def time_case(case: Case, n: int) -> float:
    """Nanoseconds per call of ``case`` over ``n`` calls (awaited on its loop if it has one)."""
    if case.loop is None:
        return time_batch(case.call, n)
    return case.loop.run_until_complete(atime_batch(case.call, n))


def calibrate_case(case: Case, seconds: float) -> int:
    if case.loop is None:
        return calibrate(case.call, seconds)
    n = 16
    while True:
        per_call = time_case(case, n)
        if per_call * n >= seconds * 1e8 or n >= 1 << 22:  # a tenth of the batch time, in ns
            break
        n *= 4
    best = min(per_call, time_case(case, n), time_case(case, n))
    return max(1, int(seconds * 1e9 / max(best, 1.0)))


def run_group(group: Group, rounds: int, batch_seconds: float) -> None:
    for case in group.all:
        time_case(case, 1)  # warm: first-use costs (connections, generation reads) are not hits
        case.batch = calibrate_case(case, batch_seconds)
    for r in range(rounds):
        order = group.all if r % 2 == 0 else list(reversed(group.all))
        this_round = {}
        for case in order:
            this_round[case.name] = time_case(case, case.batch)
        floor = this_round[group.floor.name]
        for case in group.all:
            case.per_call_ns.append(this_round[case.name])
            case.ratios.append(this_round[case.name] / floor)


def median(values: list[float]) -> float:
    return statistics.median(values)


# ---------------------------------------------------------------------------------------------
# groups


#: Entries leave the process signed with a key derived from this (as a Django project's SECRET_KEY).
SECRET = "benchmark-secret-0123456789abcdef"


def make_manager(config: dict, **options: Any):
    """``regions.CacheManager(config, ...)`` with a secret where this version of regions takes one
    (entries stored outside the process are then signed, as in a configured project)."""
    import inspect

    import regions

    if "secret" in inspect.signature(regions.CacheManager).parameters:
        options["secret"] = SECRET
    manager = regions.CacheManager(config, **options)
    MANAGERS.append(manager)
    return manager


#: Every manager the groups made: closed before the servers stop (a manager still open publishes
#: its figures at exit, to a server that is gone: one "is down" line per server, for nothing).
MANAGERS: list[Any] = []


def close_managers() -> None:
    while MANAGERS:
        manager = MANAGERS.pop()
        if hasattr(manager, "close"):
            manager.close()


def memcached_region(address: str, name: str = "mc"):
    """A manager with one memcached region and a decorated function whose hit the groups time."""
    manager = make_manager({name: {"BACKEND": "memcached", "LOCATION": address, "TIMEOUT": 3600}},
                           key_prefix="bench")

    @manager.region(name)
    def product_list(category):
        return PAYLOAD

    assert product_list(42) == PAYLOAD  # stored: every call from now on is a hit
    manager[name].reset_stats()
    product_list.bench_manager = manager  # type: ignore[attr-defined]  (for tagged_function)
    return manager[name], product_list


def tagged_function(manager, name: str = "mc"):
    """A decorated function of ``manager``'s region ``name`` with 2 tags, its entry stored (every
    call from now on is a hit: one mg and the counters' get in one send)."""

    @manager.region(name, tags=lambda category: [f"item:{category}", "items"])
    def product_list_tagged(category):
        return PAYLOAD

    assert product_list_tagged(42) == PAYLOAD
    return product_list_tagged


def check_hits(region, what: str) -> str | None:
    """A problem that makes the region's timings meaningless, or ``None``.

    A memcached region whose server is marked down returns the function's result without any
    network call: faster than any GET, so timings taken then would flatter it. Every timed call
    must have been a hit served by memcached.
    """
    st = region.stats()
    unavailable = st.get("unavailable", 0)
    if st["misses"] or st["errors"] or unavailable or not st["hits"]:
        return (f"INVALID {what}: region stats {st['hits']} hits, {st['misses']} misses, "
                f"{st['errors']} errors, {unavailable} unavailable: not every call was a hit")
    return None


def pickle_offset(blob: bytes) -> int:
    """Where the pickle of the entry starts in the bytes the region stored.

    The region may put a header before it (a format mark, a signature); the floor does not check
    it, it only needs the same pickle. Found by trying, so the floor does not depend on the format.
    """
    for offset in range(min(len(blob), 256)):
        try:
            entry = pickle.loads(memoryview(blob)[offset:])
        except Exception:
            continue
        if isinstance(entry, tuple) and len(entry) == 3 and entry[2] == PAYLOAD:
            return offset
    raise RuntimeError("no pickled entry found in the region's item: the floor cannot read it")


def raw_reader(server: tuple[str, int], wire: str) -> Callable[[], object]:
    """``pickle.loads(client.get(wire))`` on a new pymemcache client of its own: the hand-written
    minimum, one GET of the very item the region stored (same key, same bytes on the wire) and one
    unpickling of the same pickle. Same client settings as the region's pooled clients (``no_delay``),
    no serializer. What the region does besides (check a signature, bookkeeping) is its own cost."""
    from pymemcache.client.base import Client

    client = Client(server, connect_timeout=1.0, timeout=1.0, no_delay=True)
    loads = pickle.loads
    get = client.get
    blob = get(wire)
    assert blob is not None, "the raw client does not find the region's item"
    offset = pickle_offset(blob)
    if offset == 0:
        def raw_get():
            return loads(get(wire))[2]
    else:
        def raw_get():
            return loads(memoryview(get(wire))[offset:])[2]

    raw_get.close = client.close  # type: ignore[attr-defined]
    return raw_get


MC_PLAIN = "regions memcached region"
MC_TAGGED = "regions memcached region, 2 tags"


def finish_memcached(group: Group) -> None:
    """(a)'s paired row: the tagged hit against the untagged one, same rounds (issue 17: <= 1.15x)."""
    group.extra.append(("ratio memcached 2 tags / no tags", MC_TAGGED, MC_PLAIN,
                        paired_ratio(group, MC_TAGGED, MC_PLAIN), 1.15))


def memcached_group(server: Memcached) -> Group:
    region, product_list = memcached_region(server.address)
    # The floor is a raw pymemcache client that this script makes itself (not one of the region's:
    # how the region holds its connections is the region's business and may change), reading the
    # very item the region stores (same key, same bytes) from the same server.
    #
    # Is another socket fair? memcached hands each connection to one of its worker threads, and
    # where that thread wakes moved a loopback GET between ~12 and ~90 us on the machine where this
    # was written: with several worker threads, a floor on another socket measured that luck (the
    # older version of this script read over the region's own socket for that reason). This
    # server therefore runs ONE worker thread (-t 1), so every connection, the floor's and the
    # region's alike, is served by the same thread; the short interleaved batches then let both see
    # the same state of the machine. The "another raw client" row checks it: two raw clients on
    # two sockets must come out at ~1.00x of each other, else the floor is measuring luck.
    wire = product_list.cache_key(42)
    assert isinstance(wire, str), "the region could not read its generation counters"
    group = Group(
        "(a) memcached hit",
        Case("raw GET + pickle.loads, same item", raw_reader(server.server, wire), note="floor"),
        [
            Case("regions memcached region", functools.partial(product_list, 42), target=1.10),
            Case("raw GET + pickle.loads, another raw client", raw_reader(server.server, wire)),
            Case(MC_TAGGED, functools.partial(tagged_function(product_list.bench_manager), 42)),
        ],
        notes=[f"memcached -t {server.threads}: one worker thread serves every connection, so the "
               "floor's socket and the region's see the same server thread"],
    )
    group.checks.append((region, "regions memcached region"))
    region.reset_stats()  # (the tagged function's first call was a miss)

    try:
        from dogpile.cache import make_region

        dog = make_region().configure(
            "dogpile.cache.pymemcache", expiration_time=3600, arguments={"url": server.address}
        )

        @dog.cache_on_arguments()
        def dog_products(category):
            return PAYLOAD

        assert dog_products(42) == PAYLOAD
        group.cases.append(Case("dogpile.cache pymemcache backend", functools.partial(dog_products, 42)))
    except ImportError:
        group.skipped.append("dogpile.cache not installed (pip install dogpile.cache)")

    try:
        import memcache  # noqa: F401  (python-memcached, Beaker's ext:memcached client)
        from beaker.cache import CacheManager as BeakerManager

        beaker = BeakerManager(
            cache_regions={"bench_mc": {"type": "ext:memcached", "url": server.address, "expire": 3600,
                                        "memcache_module": "memcache", "lock_dir": tempfile.mkdtemp()}}
        )

        @beaker.region("bench_mc")
        def beaker_products(category):
            return PAYLOAD

        assert beaker_products(42) == PAYLOAD
        group.cases.append(
            Case("beaker ext:memcached (python-memcached)", functools.partial(beaker_products, 42))
        )
    except ImportError:
        group.skipped.append("python-memcached not installed: no Beaker ext:memcached reference")
    return group


def redis_group(server: RedisServer) -> Group:
    """(h) A Redis region's hit against a raw redis-py ``GET`` + ``pickle.loads`` of the same item,
    on a client of its own; and the ways to also learn the entry's remaining life in the same round
    trip (the region sends ``GET`` + ``PTTL`` together on one pooled connection)."""
    import redis

    manager = make_manager({"rd": {"BACKEND": "redis", "LOCATION": server.url, "TIMEOUT": 3600}},
                           key_prefix="bench")

    @manager.region("rd")
    def product_list(category):
        return PAYLOAD

    assert product_list(42) == PAYLOAD
    region = manager["rd"]
    region.reset_stats()
    wire = product_list.cache_key(42)
    raw = redis.Redis.from_url(server.url, socket_timeout=1.0)
    loads, get = pickle.loads, raw.get
    offset = pickle_offset(get(wire))

    def raw_get():
        return loads(memoryview(get(wire))[offset:])[2]

    pipe_client = redis.Redis.from_url(server.url, socket_timeout=1.0)

    def raw_pipeline():
        pipe = pipe_client.pipeline(transaction=False)
        pipe.get(wire)
        pipe.pttl(wire)
        data, _left = pipe.execute()
        return loads(memoryview(data)[offset:])[2]

    lua_client = redis.Redis.from_url(server.url, socket_timeout=1.0)
    script = lua_client.register_script("return {redis.call('GET', KEYS[1]), redis.call('PTTL', KEYS[1])}")

    def raw_lua():
        data, _left = script(keys=[wire])
        return loads(memoryview(data)[offset:])[2]

    group = Group(
        "(h) redis hit",
        Case("raw redis-py GET + pickle.loads, same item", raw_get, note="floor"),
        [
            Case("regions redis region (GET+PTTL, one send)", functools.partial(product_list, 42),
                 target=1.10),
            Case("raw redis-py pipeline GET+PTTL + loads", raw_pipeline),
            Case("raw redis-py EVALSHA {GET, PTTL} + loads", raw_lua),
        ],
        notes=["the region reads the remaining life (PTTL) with the GET: freshness on the server's clock"],
    )
    group.checks.append((region, "regions redis region"))
    group.manager = manager  # type: ignore[attr-defined]  # kept open while the group runs
    return group


class WithoutLoopReads:
    """A namespace manager seen without its read on the event loop (no ``aget_entry``): the engine
    then reads on the store's I/O threads, as every coroutine's hit did before (the reference)."""

    def __init__(self, ns: Any) -> None:
        self._ns = ns
        self.namespace = ns.namespace

    def __getattr__(self, name: str) -> Any:
        if name.startswith("aget_"):
            raise AttributeError(name)
        return getattr(self._ns, name)


def async_group(server: Memcached) -> Group:
    """(g): an ``async def`` function's memcached hit, against the sync raw GET of the same item."""
    import asyncio

    loop = asyncio.new_event_loop()
    manager = make_manager({"amc": {"BACKEND": "memcached", "LOCATION": server.address, "TIMEOUT": 3600}},
                           key_prefix="bench")

    @manager.region("amc")
    async def product_list(category):
        return PAYLOAD

    region = manager["amc"]
    assert loop.run_until_complete(product_list(42)) == PAYLOAD  # stored: every call from now is a hit
    wire = product_list.cache_key(42)
    assert isinstance(wire, str), "the region could not read its generation counters"
    key = wire.rsplit(":", 1)[1]
    old_ns = WithoutLoopReads(region.namespace(f"{product_list.__module__}.{product_list.__qualname__}"))

    async def unreachable() -> object:
        raise AssertionError("the thread-hop reference missed")

    def thread_hop():
        return region.aget_or_create_in(old_ns, key, unreachable, 3600)

    assert loop.run_until_complete(thread_hop()) == PAYLOAD, "the reference reads another key"
    region.reset_stats()
    raw = raw_reader(server.server, wire)
    group = Group(
        "(g) async memcached hit, on the event loop (target: regions / sync raw GET)",
        Case("sync raw GET + pickle.loads, same item", raw, note="floor"),
        [
            Case("regions async hit (on the loop)", functools.partial(product_list, 42), target=1.30,
                 loop=loop),
            Case("regions async hit via I/O threads (before)", thread_hop, loop=loop),
            Case("sync raw GET + pickle.loads, another client", raw_reader(server.server, wire)),
        ],
        notes=["a coroutine's hit is awaited in a loop inside one coroutine; the floor is the sync "
               "raw GET of (a), of the very item the async function stored",
               "the 'before' row reads through the store's I/O threads (run_in_executor), as every "
               "coroutine's hit did before reads on the loop"],
    )
    group.checks.append((region, "regions async hits"))

    async def executor_get():
        return await asyncio.get_running_loop().run_in_executor(None, raw)

    group.cases.append(Case("run_in_executor around the raw GET", executor_get, loop=loop))
    try:
        import aiomcache

        offset = pickle_offset(raw_blob(server.server, wire))
        client = loop.run_until_complete(_make_aiomcache(aiomcache, server))
        bkey = wire.encode()
        loads = pickle.loads

        async def aiomcache_get():
            return loads(memoryview(await client.get(bkey))[offset:])[2]

        assert loop.run_until_complete(aiomcache_get()) == PAYLOAD
        group.cases.append(Case("aiomcache GET + pickle.loads (async raw)", aiomcache_get, loop=loop))
    except ImportError:
        group.skipped.append("aiomcache not installed (pip install aiomcache): no async raw reference")
    return group


def async_redis_group(server: RedisServer) -> Group:
    """(i): an ``async def`` function's Redis hit, on the loop (redis.asyncio connections, GET +
    PTTL in one send), against the sync raw redis-py ``GET`` + ``pickle.loads`` of the same item."""
    import asyncio

    import redis
    import redis.asyncio

    loop = asyncio.new_event_loop()
    manager = make_manager({"ard": {"BACKEND": "redis", "LOCATION": server.url, "TIMEOUT": 3600}},
                           key_prefix="bench")

    @manager.region("ard")
    async def product_list(category):
        return PAYLOAD

    region = manager["ard"]
    assert loop.run_until_complete(product_list(42)) == PAYLOAD  # stored: every call from now is a hit
    wire = product_list.cache_key(42)
    key = wire.rsplit(":", 1)[1]
    old_ns = WithoutLoopReads(region.namespace(f"{product_list.__module__}.{product_list.__qualname__}"))

    async def unreachable() -> object:
        raise AssertionError("the thread-hop reference missed")

    def thread_hop():
        return region.aget_or_create_in(old_ns, key, unreachable, 3600)

    assert loop.run_until_complete(thread_hop()) == PAYLOAD, "the reference reads another key"
    loads = pickle.loads

    def sync_raw() -> Callable[[], object]:
        get = redis.Redis.from_url(server.url, socket_timeout=1.0).get
        offset = pickle_offset(get(wire))

        def raw_get():
            return loads(memoryview(get(wire))[offset:])[2]

        return raw_get

    raw = sync_raw()
    aclient = redis.asyncio.Redis.from_url(server.url, socket_timeout=1.0)
    offset = pickle_offset(raw_blob_redis(server, wire))

    async def asyncio_get():
        return loads(memoryview(await aclient.get(wire))[offset:])[2]

    assert loop.run_until_complete(asyncio_get()) == PAYLOAD
    region.reset_stats()
    group = Group(
        "(i) async redis hit, on the event loop (target: regions / sync raw GET)",
        Case("sync raw redis-py GET + pickle.loads, same item", raw, note="floor"),
        [
            Case("regions async redis hit (on the loop)", functools.partial(product_list, 42), target=1.30,
                 loop=loop),
            Case("regions async redis hit via I/O threads (before)", thread_hop, loop=loop),
            Case("sync raw redis-py GET + loads, another client (A/A)", sync_raw()),
            Case("redis.asyncio client GET + pickle.loads (async raw)", asyncio_get, loop=loop),
        ],
        notes=["a coroutine's hit is awaited in a loop inside one coroutine; the floor is the sync "
               "raw GET of the very item the async function stored; the A/A row is the floor again "
               "on another client (how far two identical cases drift apart in this run)",
               "the region's hit sends GET + PTTL in one write on a redis.asyncio connection of the "
               "loop's own and reads both replies with redis-py's parser"],
    )
    group.checks.append((region, "regions async redis hits"))
    group.manager = manager  # type: ignore[attr-defined]  # kept open while the group runs
    return group


def raw_blob_redis(server: RedisServer, wire: str) -> bytes:
    import redis

    client = redis.Redis.from_url(server.url)
    try:
        blob = client.get(wire)
    finally:
        client.close()
    assert isinstance(blob, bytes), "the async function's item is not on the server"
    return blob


async def _make_aiomcache(aiomcache: Any, server: Memcached) -> Any:
    return aiomcache.Client(server.server[0], server.port, pool_size=2)


def raw_blob(server: tuple[str, int], wire: str) -> bytes:
    from pymemcache.client.base import Client

    client = Client(server)
    try:
        blob = client.get(wire)
    finally:
        client.close()
    assert blob is not None
    return blob


def request_group() -> Group:
    import regions

    manager = make_manager({"req": {"BACKEND": "request"}, "mem": {"BACKEND": "memory"}})

    @manager.region("req")
    def current_user(user_id):
        return PAYLOAD

    @manager.region("mem")
    def memory_user(user_id):
        return PAYLOAD

    def dict_memo(func):
        memo: dict = {}

        @functools.wraps(func)
        def wrapper(*args):
            key = (args,)
            try:
                return memo[key]
            except KeyError:
                value = memo[key] = func(*args)
                return value

        return wrapper

    @dict_memo
    def memo_user(user_id):
        return PAYLOAD

    @functools.lru_cache(maxsize=None)  # noqa: UP033 - the name people know
    def lru_user(user_id):
        return PAYLOAD

    # The scope stays open for the whole group, as it would for one long request.
    scope = regions.request_scope()
    scope.__enter__()
    assert current_user(7) == PAYLOAD and current_user(7) is PAYLOAD

    group = Group(
        "(b) in-process hit",
        Case("dict-memo decorator (tuple key)", functools.partial(memo_user, 7), note="floor"),
        [
            Case("regions request region (in scope)", functools.partial(current_user, 7), target=2.5),
            Case("regions memory region", functools.partial(memory_user, 7), target=2.5),
            Case("functools.lru_cache", functools.partial(lru_user, 7)),
        ],
    )

    try:
        from beaker.cache import CacheManager as BeakerManager

        beaker = BeakerManager(cache_regions={"bench_mem": {"type": "memory", "expire": 3600}})

        @beaker.region("bench_mem")
        def beaker_user(user_id):
            return PAYLOAD

        assert beaker_user(7) == PAYLOAD
        group.cases.append(Case("beaker memory region", functools.partial(beaker_user, 7)))
    except ImportError:  # pragma: no cover - Beaker is a dependency of regions
        group.skipped.append("beaker not importable")
    group.scope = scope  # type: ignore[attr-defined]
    return group


def file_group(workdir: Path, big: int) -> Group:
    value = PAYLOAD
    manager = make_manager({
        "few": {"BACKEND": "file", "LOCATION": str(workdir / "few"), "TIMEOUT": None},
        "many": {"BACKEND": "file", "LOCATION": str(workdir / "many"), "TIMEOUT": None},
    })

    @manager.region("few")
    def page_few(n):
        return value

    @manager.region("many")
    def page_many(n):
        return value

    start = time.perf_counter()
    for i in range(10):
        page_few(i)
    for i in range(big):
        page_many(i)
    fill_seconds = time.perf_counter() - start
    # The fill leaves ~11 MB of dirty pages, mostly of the large region's files: written back now,
    # not by the kernel's flusher during the timing, where it would slow that region's reads only.
    if hasattr(os, "sync"):
        os.sync()

    # Hits cycle over many keys, so directory lookups are not always for the same file.
    few_keys = itertools.cycle(range(10))
    many_keys = itertools.cycle(range(0, big, max(1, big // 1000)))
    few_paths = [page_few.cache_key(i) for i in range(10)]
    read_paths = itertools.cycle(few_paths)
    load_paths = itertools.cycle(few_paths)
    # the same floor over the same entry files the large region's hits read: what the kernel's
    # path walk and page cache cost for 1,000 distinct files against 10, with no region involved
    many_load_paths = itertools.cycle([page_many.cache_key(i) for i in range(0, big, max(1, big // 1000))])
    with open(few_paths[0], "rb") as f:
        offset = value_offset(f.read())
    loads = pickle.loads

    def read_raw():
        with open(next(read_paths), "rb") as f:
            return f.read()

    def read_and_load():
        # the hand-written minimum of a hit: read the region's own entry file whole, unpickle the
        # value in it (the same pickle the region unpickles; its header and tags are not read)
        with open(next(load_paths), "rb") as f:
            return loads(memoryview(f.read())[offset:])

    def read_and_load_many():
        with open(next(many_load_paths), "rb") as f:
            return loads(memoryview(f.read())[offset:])

    def hit_few():
        return page_few(next(few_keys))

    def hit_many():
        return page_many(next(many_keys))

    group = Group(
        "(c) file hit",
        Case("raw open().read() + pickle.loads, entry file", read_and_load, note="floor"),
        [
            Case("regions file region, 10 entries", hit_few, target=1.5),
            Case(f"regions file region, {big:,} entries", hit_many),
            Case("raw open().read() of an entry file", read_raw),
            Case(RAW_MANY, read_and_load_many),
        ],
    )
    group.fill_seconds = fill_seconds  # type: ignore[attr-defined]

    from beaker.cache import Cache

    for label, count in (("10", 10), (f"{big:,}", big)):
        cache = Cache(f"bench-{count}", type="file", data_dir=str(workdir / f"beaker-{count}"))
        ns = cache.namespace
        ns.acquire_write_lock()  # one write of the whole namespace file (Beaker keeps one file per namespace)
        try:
            now = time.time()
            for i in range(count):
                ns[f"k{i}".encode()] = (now, None, value)  # Beaker's Cache turns str keys into bytes
        finally:
            ns.release_write_lock()
        keys = itertools.cycle([f"k{i}" for i in range(0, count, max(1, count // 1000))])
        get = cache.get
        assert get("k0") == value
        group.cases.append(Case(f"beaker file backend, {label} entries",
                                lambda get=get, keys=keys: get(next(keys))))
    return group


#: the floor of group (c) over the large file region's entry files: the kernel's own scaling
RAW_MANY = "raw read + loads, the large region's files"


def value_offset(blob: bytes) -> int:
    """Where the pickle of the value starts in a file region's entry file (after its format mark):
    found by trying, so the floor does not depend on the format."""
    for offset in range(min(len(blob), 256)):
        try:
            if pickle.loads(memoryview(blob)[offset:]) == PAYLOAD:
                return offset
        except Exception:
            continue
    raise RuntimeError("no pickled value found in the region's entry file: the floor cannot read it")


def built_group(title: str, built: Any) -> Group:
    """A group of cases built in another module (``built.cases``: the floor first; ``built.checks``),
    which stays attached as ``group.built`` for its finishing step."""
    floor, *cases = (Case(name, call, note=note) for name, call, note in built.cases)
    group = Group(title, floor, cases, checks=list(built.checks))
    group.built = built  # type: ignore[attr-defined]
    return group


def add_versus(group: Group) -> None:
    """The paired per-round ratios ``built.versus`` asks for, as rows under the group's cases."""
    for label, case, reference, target in group.built.versus:  # type: ignore[attr-defined]
        group.extra.append((label, case, reference, paired_ratio(group, case, reference), target))


def tiers_group(server: Memcached, workdir: Path) -> Group:
    """(e) process-local tiers: built in benchmarks/tiers.py, timed and reported like (a)-(c)."""
    import tiers

    built = tiers.build(server.address, server.server, workdir, make_manager, PAYLOAD)
    return built_group("(e) process-local tiers (targets: ratio to the memory region hit, below)", built)


def django_group(server: Memcached, redis_server: RedisServer | None = None) -> Group:
    """(f) Django's ``cache.get`` hit: built in benchmarks/django_cache.py, timed like (a)-(c); with
    ``redis_server``, Django's and django-redis's ``RedisCache`` against ``RegionCache`` over Redis."""
    import django_cache

    built = django_cache.build(server.address, server.server, SECRET, PAYLOAD,
                               redis_url=redis_server.url if redis_server else None)
    title = "(f) Django cache: get hit, 20-key batches (targets: RegionCache against the others, below)"
    group = built_group(title, built)
    group.skipped.extend(built.skipped)
    return group


def finish_django(group: Group) -> None:
    try:
        add_versus(group)
    finally:
        group.built.close()  # type: ignore[attr-defined]


def finish_tiers(group: Group) -> None:
    """Ratios to the memory region hit (paired per round), then the memcached commands per hit."""
    built = group.built  # type: ignore[attr-defined]
    add_versus(group)
    try:
        notes, rows = built.count()
    finally:
        built.close()
    group.notes.extend(notes)
    group.data.extend({"group": group.title, **row} for row in rows)


# ---------------------------------------------------------------------------------------------
# concurrency

#: Longest wait of a slice's start or end before the benchmark gives up (a thread died or hung).
BARRIER_TIMEOUT = 30.0


class Crew:
    """``n`` threads, each calling its own ``make_call()`` in a loop for one time slice at a time.

    ``make_call`` runs in the thread (a raw client is then made and connected by the thread that
    uses it). Between slices the threads wait on a barrier: no CPU, no GIL, so an idle crew does not
    disturb the one being timed.
    """

    def __init__(self, n: int, make_call: Callable[[], Callable[[], object]], name: str) -> None:
        self.n, self.name = n, name
        self.deadline = 0.0
        self.counts = [0] * n
        self.failure: BaseException | None = None
        self.closing = False
        self.go = threading.Barrier(n + 1)
        self.done = threading.Barrier(n + 1)
        self.threads = [
            threading.Thread(target=self._work, args=(i, make_call), name=f"{name}-{i}", daemon=True)
            for i in range(n)
        ]
        for thread in self.threads:
            thread.start()
        self._wait(self.done)  # every thread has its call, made once (connected, warm)

    def _wait(self, barrier: threading.Barrier) -> None:
        try:
            barrier.wait(timeout=BARRIER_TIMEOUT)
        except threading.BrokenBarrierError:
            raise RuntimeError(f"{self.name}: a thread failed: {self.failure!r}") from self.failure

    def _work(self, i: int, make_call: Callable[[], Callable[[], object]]) -> None:
        call = None
        try:
            call = make_call()
            call()
            self.done.wait()
            clock = time.perf_counter
            while True:
                self.go.wait()
                if self.closing:
                    return
                deadline, n = self.deadline, 0
                while clock() < deadline:
                    call()
                    call()
                    call()
                    call()
                    n += 4
                self.counts[i] = n
                self.done.wait()
        except threading.BrokenBarrierError:
            return
        except BaseException as exc:
            self.failure = exc
            self.go.abort()
            self.done.abort()
        finally:
            close = getattr(call, "close", None)  # a raw client: its socket is closed with its thread
            if close is not None:
                close()

    def run(self, seconds: float) -> tuple[float, float]:
        """One slice: hits per second of all threads together, and process CPU seconds per hit."""
        self.deadline = time.perf_counter() + seconds
        gc_was_on = gc.isenabled()
        gc.disable()
        try:
            cpu = time.process_time()
            start = time.perf_counter()
            self._wait(self.go)
            self._wait(self.done)
            elapsed = time.perf_counter() - start
            cpu = time.process_time() - cpu
        finally:
            if gc_was_on:
                gc.enable()
        hits = sum(self.counts)
        return hits / elapsed, cpu / max(hits, 1)

    def close(self) -> None:
        self.closing = True
        try:
            self.go.wait(timeout=5)
        except threading.BrokenBarrierError:
            pass
        for thread in self.threads:
            thread.join(5)


RAW, OURS, AGAIN = "raw", "regions", "raw again"


@dataclass
class Level:
    """One thread count of the concurrency group: per round, the aggregate hits/s of each side."""

    threads: int
    target: float | None  # min ratio regions / raw hits per second
    rates: dict[str, list[float]] = field(default_factory=lambda: {RAW: [], OURS: [], AGAIN: []})
    cpu: dict[str, list[float]] = field(default_factory=lambda: {RAW: [], OURS: [], AGAIN: []})

    def ratios(self, side: str) -> list[float]:
        """``side`` / raw, round by round."""
        return [x / y for x, y in zip(self.rates[side], self.rates[RAW], strict=True)]


@dataclass
class Concurrency:
    title: str
    levels: list[Level]
    slice_seconds: float
    notes: list[str] = field(default_factory=list)
    checks: list[tuple[Any, str]] = field(default_factory=list)


def concurrency_group(
    server: Memcached, threads: list[int], rounds: int, slice_seconds: float
) -> Concurrency:
    """Aggregate hits/s of N threads calling a memcached-region function, against N threads each
    with its own raw pymemcache client doing GET + pickle.loads of the same item.

    One raw client per thread is what a hand-written program would use: no pool, no lock, nothing
    shared between the threads. Rounds interleave every thread count and every side (regions, raw,
    raw again; the next round in the reverse order), so a slow spell of the machine falls on all of
    them; ratios are medians of per-round ratios. "raw again" is a second set of raw threads with
    clients of their own, timed like the others: its ratio to the floor should be ~1.00x, and how
    far it strays says how much of a ratio is noise or connection luck.
    """
    region, product_list = memcached_region(server.address, "mc_threads")
    wire = product_list.cache_key(42)
    assert isinstance(wire, str), "the region could not read its generation counters"
    group = Concurrency(
        "(d) memcached hits from N threads",
        [Level(n, 0.80 if n >= 2 else None) for n in threads],
        slice_seconds,
        notes=[
            f"same memcached -t {server.threads} as (a): no connection luck, and not the bottleneck (2 and "
            "8 raw threads got 0.9-1.0x the hits/s of its default 4 worker threads when this was written)",
            f"{os.cpu_count()} cores, one GIL: Python threads overlap only while one waits on the network; "
            "'raw again' is a second raw crew: how far it is from 1.00x is the noise of this run",
        ],
    )
    group.checks.append((region, "regions, N threads"))
    makers: dict[str, Callable[[], Callable[[], object]]] = {
        OURS: lambda: functools.partial(product_list, 42),
        RAW: lambda: raw_reader(server.server, wire),
        AGAIN: lambda: raw_reader(server.server, wire),
    }
    crews: list[Crew] = []
    by_level: dict[int, dict[str, Crew]] = {}
    try:
        for level in group.levels:
            n = level.threads
            by_level[n] = {}
            for side, make in makers.items():
                crews.append(Crew(n, make, f"{side}-{n}"))
                by_level[n][side] = crews[-1]
        for r in range(rounds):
            for i, level in enumerate(group.levels):
                sides = list(makers) if (r + i) % 2 == 0 else list(reversed(makers))
                for side in sides:
                    rate, cpu = by_level[level.threads][side].run(slice_seconds)
                    level.rates[side].append(rate)
                    level.cpu[side].append(cpu)
    finally:
        for crew in crews:
            crew.close()
    return group


# ---------------------------------------------------------------------------------------------
# report


def fmt_us(ns: float) -> str:
    us = ns / 1000
    return f"{us:10.2f}" if us < 1000 else f"{us:10.0f}"


WIDTH = 46


def report(groups: list[Group | Concurrency], header: str) -> tuple[str, list[dict]]:
    lines = [header, ""]
    width = WIDTH
    lines.append(f"{'case':<{width}} {'median µs':>10} {'best µs':>10} {'vs floor':>9} {'best/best':>9}   "
                 f"{'target':<9} verdict")
    rows: list[dict] = []
    for group in groups:
        lines.append("")
        lines.append(group.title)
        if isinstance(group, Concurrency):
            report_concurrency(group, lines, rows)
        else:
            report_group(group, lines, rows)
        for region, what in group.checks:
            problem = check_hits(region, what)
            if problem:
                lines.append(f"  ({problem})")
    return "\n".join(lines), rows


def report_group(group: Group, lines: list[str], rows: list[dict]) -> None:
    width = WIDTH
    floor_best = min(group.floor.per_call_ns)
    for case in group.all:
        us = median(case.per_call_ns)
        best = min(case.per_call_ns)
        ratio = median(case.ratios)
        if case is group.floor:
            target, verdict = "(floor)", ""
        elif case.target is not None:
            target = f"<= {case.target:.2f}x"
            verdict = "OK" if ratio <= case.target else "MISSED"
        else:
            target, verdict = case.note or "reference", ""
        lines.append(f"  {case.name:<{width - 2}} {fmt_us(us)} {fmt_us(best)} {ratio:8.2f}x "
                     f"{best / floor_best:8.2f}x   {target:<9} {verdict}")
        rows.append({"group": group.title, "case": case.name, "median_ns": us, "best_ns": best,
                     "ratio": ratio, "best_ratio": best / floor_best, "target": case.target,
                     "rounds": len(case.per_call_ns), "batch": case.batch})
    best_of = {case.name: min(case.per_call_ns) for case in group.all}
    for label, a, b, ratio, target in group.extra:
        verdict = "" if target is None else ("OK" if ratio <= target else "MISSED")
        tgt = "reference" if target is None else f"<= {target:.2f}x"
        # a row of ratios of ratios (a, b empty) has no best/best
        best_ratio, blank = (best_of[a] / best_of[b], "") if a else (None, "")
        best_text = f"{best_ratio:8.2f}x" if best_ratio is not None else f"{blank:>9}"
        lines.append(f"  {label:<{width - 2}} {blank:>21} {ratio:8.2f}x {best_text}   "
                     f"{tgt:<9} {verdict}")
        rows.append({"group": group.title, "case": label, "ratio": ratio, "best_ratio": best_ratio,
                     "target": target})
    rows.extend(group.data)
    for note in group.skipped:
        lines.append(f"  (skipped: {note})")
    for note in group.notes:
        lines.append(f"  ({note})")
    noisy(group.floor.per_call_ns, lines)


def report_concurrency(group: Concurrency, lines: list[str], rows: list[dict]) -> None:
    """Throughput, so higher is better: the columns are hits per second of all threads together,
    the ratio is side / raw in the same round, and the target is a minimum."""
    width = WIDTH
    lines.append(f"  {'(higher is better: aggregate hits/s)':<{width - 2}} {'median/s':>10} {'best/s':>10} "
                 f"{'vs raw':>9} {'best/best':>9}")
    for level in group.levels:
        n = level.threads
        raw_best = max(level.rates[RAW])
        for side, label, target in (
            (RAW, "raw GET + loads, client each", "floor"),
            (OURS, "regions memcached region", level.target),
            (AGAIN, "raw again, other clients", None),
        ):
            per_round = level.rates[side]
            rate, best, ratio = median(per_round), max(per_round), median(level.ratios(side))
            if target == "floor":
                tgt, verdict, target = "(floor)", "", None
            elif target is None:
                tgt, verdict = "reference", ""
            else:
                tgt = f">= {target:.2f}x"
                verdict = "OK" if ratio >= target else "MISSED"
            name = f"{n} thread{'s' if n > 1 else ''}: {label}"
            lines.append(f"  {name:<{width - 2}} {rate:10,.0f} {best:10,.0f} {ratio:8.2f}x "
                         f"{best / raw_best:8.2f}x   {tgt:<9} {verdict}")
            rows.append({"group": group.title, "case": name, "threads": n, "median_hits_per_s": rate,
                         "best_hits_per_s": best, "ratio": ratio, "best_ratio": best / raw_best,
                         "target": target, "target_is_minimum": True,
                         "cpu_us_per_hit": median(level.cpu[side]) * 1e6, "rounds": len(per_round),
                         "slice_s": group.slice_seconds})
    for level in group.levels:
        raw_cpu, our_cpu = median(level.cpu[RAW]) * 1e6, median(level.cpu[OURS]) * 1e6
        lines.append(f"  ({level.threads} thread(s): process CPU per hit (user + system, all threads) "
                     f"{raw_cpu:.1f} µs raw, {our_cpu:.1f} µs regions)")
    for note in group.notes:
        lines.append(f"  ({note})")
    for level in group.levels:
        noisy([1 / x for x in level.rates[RAW]], lines, f"{level.threads} thread(s): ")


def noisy(floor_values: list[float], lines: list[str], what: str = "") -> None:
    if len(floor_values) < 2:
        return
    q1, _q2, q3 = statistics.quantiles(floor_values, n=4)
    if q3 / q1 > 1.25:
        lines.append(f"  (noisy: {what}the floor's middle half spans {q3 / q1:.2f}x between rounds; "
                     f"rerun on an idle machine)")


def paired_ratio(group: Group, a: str, b: str) -> float:
    ca = next(c for c in group.all if c.name == a)
    cb = next(c for c in group.all if c.name == b)
    return median([x / y for x, y in zip(ca.per_call_ns, cb.per_call_ns, strict=True)])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="a few-second smoke run")
    parser.add_argument("--rounds", type=int, help="interleaved rounds per group (default 21, quick 5)")
    parser.add_argument("--entries", type=int, help="entries in the large file region (default 10000)")
    parser.add_argument("--json", type=Path, help="also write the results as JSON to this file")
    parser.add_argument("--threads", default="1,2,8",
                        help="thread counts of the concurrency group (default 1,2,8; 1 is a reference)")
    parser.add_argument("--groups", default="abcdefghi",
                        help="groups to run, e.g. 'ad' (default abcdefghi: all)")
    args = parser.parse_args(argv)
    try:
        threads = sorted({int(n) for n in args.threads.split(",") if n.strip()})
    except ValueError:
        parser.error("--threads takes thread counts separated by commas, e.g. 2,8")
    if not threads or min(threads) < 1:
        parser.error("--threads: counts must be >= 1")
    wanted = set(args.groups.lower())
    if not wanted or wanted - set("abcdefghi"):
        parser.error("--groups takes letters among a, b, c, d, e, f, g, h, i")

    sys.path.insert(0, str(ROOT))  # run from a checkout without installing
    import regions

    rounds = args.rounds or (5 if args.quick else 21)
    batch_seconds = 0.01 if args.quick else 0.05
    slice_seconds = batch_seconds
    big = args.entries or (1000 if args.quick else 10_000)

    servers: list[Memcached] = []
    workdir = Path(tempfile.mkdtemp(prefix="regions-bench-"))
    started = time.perf_counter()
    groups: list[Group | Concurrency] = []
    fill = ""
    try:
        if wanted & {"a", "d", "e", "f", "g"}:
            # One worker thread: every connection is served by the same thread (see memcached_group).
            servers.append(Memcached(threads=1))
        if "a" in wanted:
            a = memcached_group(servers[0])
            # A loopback GET costs ~20 us or ~100 us depending on whether the other core is awake,
            # and that flips within tens of milliseconds: many short interleaved batches let the
            # floor and each case see the same state, so the per-round ratios stay comparable.
            run_group(a, rounds * 10, batch_seconds / 25)
            finish_memcached(a)
            groups.append(a)

        if "b" in wanted:
            b = request_group()
            try:
                run_group(b, rounds, batch_seconds)
            finally:
                b.scope.__exit__(None, None, None)  # type: ignore[attr-defined]
            groups.append(b)

        if "c" in wanted:
            c = file_group(workdir, big)
            run_group(c, rounds, batch_seconds)
            few, many = c.cases[0].name, c.cases[1].name
            scaling = paired_ratio(c, many, few)
            c.extra.append((f"scaling: {big:,} entries / 10 entries", many, few, scaling, None))
            # The same scaling of the floor: what reading 1,000 distinct files costs the kernel
            # against 10 (path walk, inodes, page cache), with no region involved. It is 1.09-1.14x
            # by itself, so the target is on the region's scaling net of it (per round): what the
            # region adds as its entries grow, the issue's intent (Beaker's file backend: ~95x).
            kernel = paired_ratio(c, RAW_MANY, c.floor.name)
            c.extra.append(("kernel's scaling (raw read + loads)", RAW_MANY, c.floor.name,
                            kernel, None))
            net = median([(m / f) / (k / r) for m, f, k, r in zip(
                *(next(x for x in c.all if x.name == name).per_call_ns
                  for name in (many, few, RAW_MANY, c.floor.name)), strict=True)])
            c.extra.append(("scaling net of the kernel's", "", "", net, 1.10))
            groups.append(c)
            fill = f"file region fill: {big + 10:,} entries written in {c.fill_seconds:.1f}s; "  # type: ignore[attr-defined]

        if "d" in wanted:
            # twice the rounds, of shorter slices: the machine's state changes within tens of ms
            groups.append(concurrency_group(servers[0], threads, 2 * rounds, slice_seconds))

        if "e" in wanted:
            e = tiers_group(servers[0], workdir)
            run_group(e, rounds, batch_seconds)
            finish_tiers(e)
            groups.append(e)

        if "g" in wanted:
            g = async_group(servers[0])
            # short interleaved batches, as (a): network hits on both sides
            run_group(g, rounds * 10, batch_seconds / 25)
            groups.append(g)

        redis_server = RedisServer() if wanted & {"f", "h", "i"} else None
        try:
            if "f" in wanted:
                f = django_group(servers[0], redis_server)
                # short interleaved batches, as (a): network hits on both sides
                run_group(f, rounds * 4, batch_seconds / 10)
                finish_django(f)
                groups.append(f)
            if redis_server is not None and "h" in wanted:
                h = redis_group(redis_server)
                run_group(h, rounds * 10, batch_seconds / 25)  # network hits: as (a)
                groups.append(h)
            if redis_server is not None and "i" in wanted:
                i = async_redis_group(redis_server)
                run_group(i, rounds * 10, batch_seconds / 25)  # network hits: as (a)
                groups.append(i)
        finally:
            close_managers()
            if redis_server is not None:
                redis_server.stop()
    finally:
        close_managers()
        for server in servers:
            server.stop()
        shutil.rmtree(workdir, ignore_errors=True)

    header = (
        f"regions {regions.__version__} hit-path benchmark — Python {platform.python_version()}, "
        f"{memcached_version()}, {os.cpu_count()} cores\n"
        f"{rounds} interleaved rounds per group, ~{batch_seconds * 1000:.0f} ms per batch "
        f"(group a: {rounds * 10} rounds of ~{batch_seconds * 40:.1f} ms; group d: {2 * rounds} rounds "
        f"of ~{slice_seconds * 1000:.0f} ms slices); medians; "
        f"ratio = median of per-round ratios to the group's floor"
        + (" (--quick: smoke run, numbers are rough)" if args.quick else "")
    )
    text, rows = report(groups, header)
    print(text)
    print(f"\n{fill}total run {time.perf_counter() - started:.1f}s")
    if args.json:
        args.json.write_text(json.dumps({"header": header, "results": rows}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
