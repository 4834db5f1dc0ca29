"""One memcached server fails under load: hung (SIGSTOP), killed then restarted, not yet started.

Four callers (threads, or spawned processes) call a cached function on keys of their own and on
keys they share, before, during and after the fault. Each fault is measured as the issue asks:

* wrong results and exceptions reaching callers: none, ever;
* calls that waited on the network during the fault (slower than 0.9 ``timeout``: they waited out
  a socket timeout): after the first failure the server is treated as down, so at most the call
  each caller had under way waits, never one per call;
* slowest call: under two ``timeout`` (today a call waits for its get, then again for its set);
* time until hits resume once the server answers: under 5 s, after which the function is no
  longer computed.

``-s`` prints each fault's figures (the closing note's table).
"""

from __future__ import annotations

import logging
import math
import multiprocessing
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

import pytest

from tests.faults.conftest import FaultyMemcached
from tests.faults.workers import (
    Call,
    Computations,
    Outcome,
    call_until,
    keys_of,
    process_caller,
    recovered_at,
    summarize,
)

#: memcached ``timeout`` and ``connect_timeout`` of the regions under test (seconds).
TIMEOUT = 0.5
RETRY_INTERVAL = 0.3
CALLERS = 4
#: The issue's bound: hits resume within 5 s of the server answering again.
RECOVERY = 5.0
#: A call slower than this waited out a socket timeout (a hung server answers nothing, so a call
#: that waits on it waits the whole ``timeout``). Not half of it: with more busy test workers than
#: cores, the CPU alone held a call that never waited on the network for 0.26 s (-n 4 on 2 cores).
SLOW = 0.9 * TIMEOUT


def mc_config(address: str, **options: Any) -> dict[str, Any]:
    opts = {"timeout": TIMEOUT, "connect_timeout": TIMEOUT, "retry_interval": RETRY_INTERVAL, **options}
    return {"mc": {"BACKEND": "memcached", "LOCATION": address, "TIMEOUT": 300, "OPTIONS": opts}}


def report(fault: str, out: Outcome, stats: dict[str, Any], store: Any = None) -> None:
    health = getattr(store, "health", None)
    print(
        f"\n{fault}: wrong={out.wrong} exceptions={len(out.exceptions)} slowest={out.slowest:.3f}s "
        f"waited={out.waited} recovery={out.recovery:.2f}s computed_after={out.computed_after} "
        f"calls={out.calls} errors={stats.get('errors')} unavailable={stats.get('unavailable')}"
        + (f" health={health()}" if callable(health) else "")
    )


def wait_recovered(per_caller: list[list[Call]], since: float, deadline: float) -> None:
    """Until each caller's list shows a cache-served call started after ``since`` (or ``deadline``)."""
    while time.monotonic() < deadline:
        if all(recovered_at(list(calls), since) is not None for calls in per_caller):
            return
        time.sleep(0.05)


def run_threads(
    func: Callable[[int], Any],
    comps: Computations,
    *,
    begin_fault: Callable[[], None],
    end_fault: Callable[[], None],
    fault_seconds: float,
    warm: float = 0.6,
) -> tuple[Outcome, list[list[Call]], float]:
    """``CALLERS`` threads call ``func`` for ``warm`` s, through the fault and until hits resume.

    Returns the outcome, every caller's calls, and when the fault began."""
    stop = threading.Event()
    per_caller: list[list[Call]] = [[] for _ in range(CALLERS)]
    threads = [
        threading.Thread(target=call_until, args=(func, comps, keys_of(i), stop, per_caller[i]), daemon=True)
        for i in range(CALLERS)
    ]
    for t in threads:
        t.start()
    try:
        time.sleep(warm)
        fault_start = time.monotonic()
        begin_fault()
        time.sleep(fault_seconds)
        end_fault()
        fault_end = time.monotonic()
        wait_recovered(per_caller, fault_end, fault_end + RECOVERY + 1)
        time.sleep(1.0)  # a window after recovery: the function must no longer be computed
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=10)
    assert not any(t.is_alive() for t in threads), "a caller thread hung"
    out = summarize(per_caller, fault_start=fault_start, fault_end=fault_end, slow=SLOW)
    return out, per_caller, fault_start


def served_before(per_caller: list[list[Call]], fault_start: float) -> int:
    return sum(1 for calls in per_caller for c in calls if c.start < fault_start and not c.computed)


def check(out: Outcome, stats: dict[str, Any], *, callers: int = CALLERS) -> None:
    """The measures every fault must meet (see the module docstring)."""
    assert out.wrong == 0, f"{out.wrong} wrong results"
    assert not out.exceptions, f"{len(out.exceptions)} exceptions reached callers:\n{out.exceptions[0]}"
    assert out.waited <= callers, (
        f"{out.waited} calls waited on the network during the fault (over {SLOW} s each); at most the "
        f"{callers} calls under way when it began may wait, the server is then skipped: "
        + "; ".join(out.slow_calls)
    )
    assert out.slowest < 2 * TIMEOUT, f"slowest call {out.slowest:.2f} s (timeout {TIMEOUT} s)"
    assert out.recovery <= RECOVERY, f"hits resumed {out.recovery:.2f} s after the server answered again"
    assert out.computed_after == 0, (
        f"the function was still computed {out.computed_after} times after hits resumed"
    )
    # the skipped calls are counted apart from the failures: the failures are the first calls only
    assert stats.get("unavailable", 0) > 0, f"no call counted as skipped while the server was down: {stats}"
    assert stats["errors"] <= 2 * callers, f"{stats['errors']} errors: every call went to the network"


@pytest.mark.parametrize(
    ("fault", "begin", "end"),
    [
        # SIGSTOP for 3 s: no call waits after the first failure; SIGCONT: hits resume
        ("SIGSTOP 3 s, 4 threads", "pause", "resume"),
        # SIGKILL, restart on the same port (empty) 3 s later: hits resume within 5 s
        ("SIGKILL, restart after 3 s, 4 threads", "kill", "start"),
    ],
    ids=["hung", "killed-restarted"],
)
def test_outage_under_four_threads(
    faulty_memcached: Callable[..., FaultyMemcached],
    make_manager: Callable[..., Any],
    fault: str,
    begin: str,
    end: str,
) -> None:
    """A hung or killed server costs one timeout per caller at most, then hits resume."""
    server = faulty_memcached()
    manager = make_manager(mc_config(server.address))
    comps = Computations()
    func = manager.region("mc")(comps.compute)

    out, per_caller, fault_start = run_threads(
        func, comps, begin_fault=getattr(server, begin), end_fault=getattr(server, end), fault_seconds=3
    )
    stats = manager["mc"].stats()
    report(fault, out, stats, manager["mc"].store)
    assert served_before(per_caller, fault_start) > 0, "the cache served nothing before the fault"
    check(out, stats)


def test_server_down_at_start_then_started(
    faulty_memcached: Callable[..., FaultyMemcached], make_manager: Callable[..., Any]
) -> None:
    """Nothing listens when the calls begin; once memcached starts there, caching begins within 5 s."""
    server = faulty_memcached(started=False)
    manager = make_manager(mc_config(server.address))
    comps = Computations()
    func = manager.region("mc")(comps.compute)

    out, _, _ = run_threads(
        func, comps, begin_fault=lambda: None, end_fault=server.start, fault_seconds=1.5, warm=0
    )
    stats = manager["mc"].stats()
    report("down at start, started after 1.5 s, 4 threads", out, stats, manager["mc"].store)
    check(out, stats)


def test_hung_server_under_four_processes(
    faulty_memcached: Callable[..., FaultyMemcached], tmp_path: Any
) -> None:
    """SIGSTOP for 3 s under 4 spawned processes (each its own pool and breaker)."""
    server = faulty_memcached()
    config = mc_config(server.address)
    key_prefix = "p" + uuid.uuid4().hex[:10]
    ctx = multiprocessing.get_context("spawn")
    ready, results = ctx.Queue(), ctx.Queue()
    go, stop = ctx.Event(), ctx.Event()
    resumed_at = ctx.Value("d", math.inf)
    procs = [
        ctx.Process(
            target=process_caller,
            args=(config, key_prefix, i, ready, go, stop, resumed_at, results),
            daemon=True,
        )
        for i in range(CALLERS)
    ]
    for p in procs:
        p.start()
    done: dict[int, tuple[list[Call], dict[str, Any]]] = {}
    try:
        for _ in procs:
            msg = ready.get(timeout=60)
            assert msg[0] == "ready", msg
        go.set()
        time.sleep(1.0)
        fault_start = time.monotonic()
        server.pause()
        time.sleep(3)
        server.resume()
        fault_end = time.monotonic()
        resumed_at.value = fault_end
        recovered: set[int] = set()
        while len(recovered) < CALLERS and time.monotonic() < fault_end + RECOVERY + 1:
            try:
                msg = results.get(timeout=0.1)
            except Exception:
                continue
            assert msg[0] != "error", msg[2]
            recovered.add(msg[1])
        time.sleep(1.0)
        stop.set()
        while len(done) < CALLERS:
            msg = results.get(timeout=30)
            assert msg[0] != "error", msg[2]
            if msg[0] == "done":
                done[msg[1]] = (msg[2], msg[3])
    finally:
        stop.set()
        if server.paused:
            server.resume()
        for p in procs:
            p.join(timeout=10)
            if p.is_alive():
                p.kill()
    per_caller = [calls for calls, _ in done.values()]
    out = summarize(per_caller, fault_start=fault_start, fault_end=fault_end, slow=SLOW)
    totals = {
        "errors": sum(s["errors"] for _, s in done.values()),
        "unavailable": sum(s.get("unavailable", 0) for _, s in done.values()),
    }
    report("SIGSTOP 3 s, 4 processes", out, totals)
    assert served_before(per_caller, fault_start) > 0, "the cache served nothing before the fault"
    check(out, totals)
    for pid, (_, s) in done.items():  # each process trips its own breaker once
        assert s["errors"] <= 2, f"process {pid}: {s['errors']} errors"


def test_outage_logs_a_few_lines_and_counts_every_call(
    faulty_memcached: Callable[..., FaultyMemcached],
    make_manager: Callable[..., Any],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Server killed, 2 s of calls from 2 threads: at most 3 warning lines, not one per call;
    ``stats()`` still counts every failed or skipped call. Back up: one line says so."""
    server = faulty_memcached()
    manager = make_manager(mc_config(server.address))
    region = manager["mc"]
    comps = Computations()
    func = manager.region("mc")(comps.compute)
    for key in range(10):
        func(key)
    comps.start_call()
    func(1)
    assert not comps.computed(), "the cache does not serve before the fault"
    caplog.set_level(logging.WARNING)
    caplog.clear()
    before = region.stats()

    server.kill()
    stop = threading.Event()
    per_caller: list[list[Call]] = [[], []]
    threads = [
        threading.Thread(target=call_until, args=(func, comps, keys_of(i), stop, per_caller[i]), daemon=True)
        for i in range(2)
    ]
    for t in threads:
        t.start()
    time.sleep(2)
    stop.set()
    for t in threads:
        t.join(timeout=10)
    calls = sum(len(c) for c in per_caller)
    during = [r for r in caplog.records if r.levelno >= logging.WARNING]
    after = region.stats()
    counted = (after["errors"] - before["errors"]) + (
        after.get("unavailable", 0) - before.get("unavailable", 0)
    )
    print(f"\nkilled 2 s, 2 threads: {calls} calls, {len(during)} warning lines, {counted} counted")
    for r in during:
        print(f"  {r.name} {r.levelname}: {r.getMessage()}")
    assert all(not c.error and not c.wrong for cs in per_caller for c in cs)
    assert calls > 100, f"only {calls} calls in 2 s"
    assert 1 <= len(during) <= 3, f"{len(during)} warning lines for {calls} failed calls"
    assert counted >= calls, f"stats() counted {counted} failed or skipped calls of {calls}"

    caplog.clear()
    server.start()
    back = time.monotonic() + RECOVERY
    while time.monotonic() < back:
        comps.start_call()
        func(12345)
        comps.start_call()
        func(12345)
        if not comps.computed():
            break
        time.sleep(0.05)
    assert not comps.computed(), "no hit within 5 s of the restart"
    lines = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert 1 <= len(lines) <= 2, [r.getMessage() for r in lines]
