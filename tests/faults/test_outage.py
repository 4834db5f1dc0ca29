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

The runners, the measures and the scenarios run on Redis too are in :mod:`tests.faults.outages`.
``-s`` prints each fault's figures (the closing note's table).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from tests.faults import outages
from tests.faults.conftest import FaultyMemcached
from tests.faults.outages import RETRY_INTERVAL, TIMEOUT, check, report, run_threads
from tests.faults.workers import Computations


def mc_config(address: str, **options: Any) -> dict[str, Any]:
    opts = {"timeout": TIMEOUT, "connect_timeout": TIMEOUT, "retry_interval": RETRY_INTERVAL, **options}
    return {"mc": {"BACKEND": "memcached", "LOCATION": address, "TIMEOUT": 300, "OPTIONS": opts}}


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
    outages.outage_under_four_threads(server, manager, fault, begin=begin, end=end)


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
    outages.hung_under_four_processes(server, mc_config(server.address), "SIGSTOP 3 s, 4 processes")


def test_outage_logs_a_few_lines_and_counts_every_call(
    faulty_memcached: Callable[..., FaultyMemcached],
    make_manager: Callable[..., Any],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Server killed, 2 s of calls from 2 threads: at most 3 warning lines, not one per call;
    ``stats()`` still counts every failed or skipped call. Back up: one line says so."""
    server = faulty_memcached()
    manager = make_manager(mc_config(server.address))
    outages.outage_logs_a_few_lines_and_counts_every_call(server, manager, caplog, "killed 2 s, 2 threads")
