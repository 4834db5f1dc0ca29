"""Callers of a cached function on a 3-node memcached cluster, in threads or in spawned processes.

A spawned child (``multiprocessing.get_context("spawn")``) imports this module by name, so
everything it runs is a top-level function here; threads of the test process run the same loop.

Every caller knows, for each of its keys, which node holds it (the test found out beforehand by
looking at the servers themselves, see :func:`locate`). Each call is recorded as a :class:`Call`:
when it started (``time.monotonic()``: one clock for every process of the host), how long it took,
the key and its node, whether the function was computed in that call (else the cache served it),
whether the result was wrong, and the exception that reached the caller, if any.
"""

from __future__ import annotations

import os
import socket
import threading
import time
import traceback
import urllib.parse
from collections.abc import Callable, Iterable, Sequence
from typing import Any, NamedTuple

#: Pause between two calls of one caller (hundreds of calls per second, no busy loop).
PAUSE = 0.002
#: A caller never runs longer than this, even if the test forgot to stop it.
MOST_SECONDS = 40.0

_local = threading.local()

#: The secret of the spawned callers, and of a parent sharing their entries: signed, as in production
#: (without it each process would reject the others' entries as forged).
SECRET = "fault-workers-secret-" + "0123456789abcdef"


def value_of(x: int) -> tuple[str, int, str]:
    """What :func:`compute` returns for ``x``; any other result is a wrong one."""
    return ("cluster", x, f"payload-{x}-" + "q" * (x % 17))


def compute(x: int) -> tuple[str, int, str]:
    """The cached function of the cluster tests (top level: the same key in every process)."""
    _local.computed = True
    return value_of(x)


class Call(NamedTuple):
    start: float
    seconds: float
    key: int
    node: int
    computed: bool
    wrong: bool
    error: str


def call_once(func: Callable[[int], Any], key: int, node: int) -> Call:
    _local.computed = False
    start = time.monotonic()
    wrong = False
    error = ""
    try:
        wrong = func(key) != value_of(key)
    except Exception:
        error = traceback.format_exc(limit=4)
    return Call(start, time.monotonic() - start, key, node, bool(_local.computed), wrong, error)


def caller_loop(
    func: Callable[[int], Any],
    keys: Sequence[tuple[int, int]],
    stop: Any,
    watch: Any,
    notices: Any,
    name: str,
    calls: list[Call],
) -> None:
    """Call ``func`` on ``keys`` (``(key, node)`` pairs) in turn until ``stop`` is set.

    ``watch`` is a shared ``[node, since]`` pair (``multiprocessing.Array("d", 2)`` or a list):
    once this caller is served by the cache on a key of node ``watch[0]`` in a call started at or
    after ``watch[1]``, it puts ``("recovered", name, call.start)`` on ``notices`` (once).
    """
    end = time.monotonic() + MOST_SECONDS
    told = False
    i = 0
    while not stop.is_set() and time.monotonic() < end:
        key, node = keys[i % len(keys)]
        call = call_once(func, key, node)
        calls.append(call)
        i += 1
        if (
            not told
            and call.node == int(watch[0])
            and call.start >= watch[1]
            and not call.computed
            and not call.error
        ):
            notices.put(("recovered", name, call.start))
            told = True
        time.sleep(PAUSE)


def process_caller(
    config: dict[str, Any],
    key_prefix: str,
    keys: list[tuple[int, int]],
    ready: Any,
    go: Any,
    stop: Any,
    watch: Any,
    notices: Any,
    results: Any,
) -> None:
    """A spawned child: its own manager (own pools and breakers), one thread calling ``compute``.

    Puts ``("ready", pid)`` on ``ready``, waits for ``go``, runs :func:`caller_loop` until ``stop``,
    then puts ``("done", pid, calls, stats)`` on ``results`` (``("error", pid, traceback)`` if it
    broke)."""
    manager = None
    pid = os.getpid()
    try:
        import regions

        manager = regions.CacheManager(config, key_prefix=key_prefix, secret=SECRET)
        func = manager.region("mc")(compute)
        ready.put(("ready", pid))
        if not go.wait(60):
            results.put(("error", pid, "the parent never said go"))
            return
        calls: list[Call] = []
        caller_loop(func, keys, stop, watch, notices, f"process {pid}", calls)
        results.put(("done", pid, [tuple(c) for c in calls], manager["mc"].stats()))
    except BaseException:
        results.put(("error", pid, traceback.format_exc()))
    finally:
        if manager is not None:
            manager.close()


# where keys live --------------------------------------------------------------------------------
def locate(func: Any, keys: Iterable[int], addresses: Sequence[str]) -> dict[int, int]:
    """``{key: index of the server holding func(key)'s entry}``, for keys cached on exactly one.

    Found by asking every server directly for the key's wire key (``func.cache_key``), so it does
    not depend on how the region spreads keys."""
    from pymemcache.client.base import Client

    wires = {}
    for key in keys:
        wire = func.cache_key(key)
        if wire is not None:
            wires[str(wire)] = key
    where: dict[int, list[int]] = {}
    for i, address in enumerate(addresses):
        host, port = address.rsplit(":", 1)
        client = Client((host, int(port)), connect_timeout=2, timeout=2)
        try:
            found = client.get_many(list(wires))
        finally:
            client.close()
        for wire in found:
            where.setdefault(wires[wire], []).append(i)
    return {key: nodes[0] for key, nodes in where.items() if len(nodes) == 1}


def keys_on(address: str) -> list[str]:
    """Every key stored on the server right now (``lru_crawler metadump``), decoded."""
    host, port = address.rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=2) as sock:
        sock.sendall(b"lru_crawler metadump hash\r\n")
        buf = b""
        while not buf.endswith(b"END\r\n"):
            chunk = sock.recv(65536)
            if not chunk or buf.startswith((b"ERROR", b"CLIENT_ERROR", b"BUSY")):
                raise RuntimeError(f"metadump on {address}: {buf[:200]!r}")
            buf += chunk
    return [
        urllib.parse.unquote(line.split(b" ", 1)[0][4:].decode())
        for line in buf.split(b"\n")
        if line.startswith(b"key=")
    ]


def counter_nodes(addresses: Sequence[str], key_prefix: str) -> list[int]:
    """Indexes of the servers holding a generation counter of the regions under ``key_prefix``."""
    return [
        i
        for i, address in enumerate(addresses)
        if any(key_prefix in k and k.endswith("__generation__") for k in keys_on(address))
    ]
