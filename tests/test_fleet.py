"""Deployment-wide stats (regions/fleet.py) across real processes sharing one memcached and one folder.

Workers are spawned (``multiprocessing.get_context("spawn")``, tests/fleet_workers.py) or forked;
each makes a known number of hits and misses, then stays alive and publishes every
:data:`EVERY` seconds. The test process reads the totals without counting itself (it makes no call)
until it does.
"""

from __future__ import annotations

import logging
import multiprocessing
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import regions
from regions import ConfigurationError, fleet, fleet_board
from tests.conftest import MemcachedServer
from tests.fleet_workers import counting_process, forked_child, make_calls

EVERY = 0.2
#: A published figure counts this long after its writer stopped (its entry's lifetime).
EXPIRY = EVERY * 1.1 * fleet_board.EXPIRE_AFTER
#: Longest wait for totals to settle: a spawned worker's start-up, plus a few publishes.
SETTLE = 20.0


@pytest.fixture
def shared(memcached_server: str, tmp_path: Path) -> dict[str, Any]:
    """Settings and manager options that every process of one test shares (one deployment)."""
    config = {
        "mc": {"BACKEND": "memcached", "LOCATION": memcached_server},
        "files": {"BACKEND": "file", "LOCATION": str(tmp_path / "files")},
        "local": {"BACKEND": "memory"},
    }
    options = {"key_prefix": "fleet" + uuid.uuid4().hex[:8], "secret": "fleet-secret-" + uuid.uuid4().hex,
               "publish_every": EVERY}
    return {"config": config, "options": options}


@pytest.fixture
def reader(shared: dict[str, Any]) -> Iterator[regions.CacheManager]:
    """This process's manager on the same settings: it reads and makes no call (not a reporter)."""
    manager = regions.CacheManager(shared["config"], **shared["options"])
    yield manager
    manager.close()


class Workers:
    """Worker processes of one test; each one stops (and ends) when its own event is set."""

    def __init__(self, ctx: Any) -> None:
        self.ctx = ctx
        self.done = ctx.Queue()
        self.procs: list[tuple[Any, Any]] = []

    def start(self, target: Callable[..., None], *args: Any) -> None:
        stop = self.ctx.Event()
        proc = self.ctx.Process(target=target, args=(*args, self.done, stop), daemon=True)
        proc.start()
        self.procs.append((proc, stop))

    def wait_ready(self) -> list[int]:
        pids = []
        for _ in self.procs:
            pid, failure = self.done.get(timeout=60)
            assert failure is None, failure
            pids.append(pid)
        return pids

    def stop(self, index: int) -> None:
        proc, stop = self.procs[index]
        stop.set()
        proc.join(timeout=30)
        assert proc.exitcode == 0, proc.exitcode

    def close(self) -> None:
        for _, stop in self.procs:
            stop.set()
        for proc, _ in self.procs:
            proc.join(timeout=30)
            if proc.is_alive():
                proc.kill()


@pytest.fixture
def spawned() -> Iterator[Workers]:
    workers = Workers(multiprocessing.get_context("spawn"))
    yield workers
    workers.close()


def settle(manager: regions.CacheManager, expected: Callable[[dict[str, Any]], bool], within: float) -> dict:
    """``deployment_stats()`` once ``expected`` holds for it, or the last one after ``within`` s."""
    deadline = time.monotonic() + within
    while True:
        stats = manager.deployment_stats()
        if expected(stats) or time.monotonic() > deadline:
            return stats
        time.sleep(0.05)


def figures(stats: dict[str, Any], name: str) -> tuple[int, int, int, int, str]:
    row = stats[name]
    return row["hits"], row["misses"], row["sets"], row["processes"], row["scope"]


PLANS = [{"mc": (10 + i, 3 + i), "files": (5 + i, 2 * i + 1), "local": (7, 1)} for i in range(4)]


@pytest.mark.parametrize("processes", [2, 4])
def test_totals_are_the_sum_of_every_process_and_processes_their_number(
    processes: int, shared: dict[str, Any], reader: regions.CacheManager, spawned: Workers
) -> None:
    plans = PLANS[:processes]
    for plan in plans:
        spawned.start(counting_process, shared["config"], shared["options"], plan)
    spawned.wait_ready()
    want = {
        name: (sum(p[name][0] for p in plans), sum(p[name][1] for p in plans), processes, processes,
               "deployment")
        for name in ("mc", "files")
    }
    started = time.monotonic()
    stats = settle(reader, lambda s: all(figures(s, n) == want[n] for n in want), SETTLE)
    print(f"\n{processes} processes: totals settled {time.monotonic() - started:.2f} s after the last call")
    for name in want:
        assert figures(stats, name) == want[name], (name, stats[name])
    assert stats["mc"]["hit_rate"] == pytest.approx(want["mc"][0] / (want["mc"][0] + want["mc"][1]))
    assert stats["mc"]["mean_latency"] is not None and stats["mc"]["mean_latency"] > 0
    # A memory region has no shared storage: its figures are this process's (which made no call).
    assert figures(stats, "local") == (0, 0, 0, 1, "process") and stats["local"]["error"] is None

    # Once this process makes calls, it counts too, with its figures as they are now (unpublished).
    make_calls(reader, {"mc": (4, 2)})
    now = reader.deployment_stats()
    assert figures(now, "mc") == (want["mc"][0] + 4, want["mc"][1] + 2, processes + 1, processes + 1,
                                  "deployment")
    assert figures(now, "local") == (0, 0, 0, 1, "process")


def test_a_process_that_ends_drops_out_after_the_expiry(
    shared: dict[str, Any], reader: regions.CacheManager, spawned: Workers
) -> None:
    for plan in PLANS[:3]:
        spawned.start(counting_process, shared["config"], shared["options"], plan)
    spawned.wait_ready()
    mc_hits = sum(p["mc"][0] for p in PLANS[:3])
    stats = settle(reader, lambda s: figures(s, "mc")[::3] == (mc_hits, 3), SETTLE)
    assert figures(stats, "mc")[::3] == (mc_hits, 3), stats["mc"]

    spawned.stop(1)  # it ends without closing anything, as a killed worker would
    ended = time.monotonic()
    remaining = mc_hits - PLANS[1]["mc"][0]
    # each region's board is its own store, written one after the other by each publish: the
    # ended process leaves them a moment apart (a loaded machine once read "files" in between)
    stats = settle(
        reader,
        lambda s: figures(s, "mc")[::3] == (remaining, 2) and figures(s, "files")[3] == 2,
        EXPIRY + 2.0,
    )
    gone_after = time.monotonic() - ended
    print(f"\nan ended process dropped out {gone_after:.2f} s after it ended (expiry {EXPIRY:.2f} s)")
    assert figures(stats, "mc")[::3] == (remaining, 2), stats["mc"]
    assert figures(stats, "files")[3] == 2, stats["files"]
    assert gone_after <= EXPIRY + 1.0


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="os.fork")
def test_a_forked_child_reports_its_own_calls_not_its_parents(
    shared: dict[str, Any], reader: regions.CacheManager
) -> None:
    """As a gunicorn --preload worker: the parent used the regions (its thread runs) and forks."""
    parent = regions.CacheManager(shared["config"], **shared["options"])
    workers = Workers(multiprocessing.get_context("fork"))
    try:
        make_calls(parent, {"mc": (6, 2), "files": (3, 1)})
        assert not parent._fleet.idle, "the parent's thread did not start"
        child_plan = {"mc": (20, 5), "files": (4, 4)}
        workers.start(forked_child, parent, child_plan)
        workers.start(forked_child, parent, child_plan)
        workers.wait_ready()
        want = {"mc": (6 + 40, 2 + 10, 3), "files": (3 + 8, 1 + 8, 3)}
        stats = settle(reader, lambda s: all(figures(s, n)[:2] + figures(s, n)[3:4] == want[n] for n in want),
                       SETTLE)
        for name in want:
            assert figures(stats, name)[:2] + figures(stats, name)[3:4] == want[name], (name, stats[name])
        assert parent["mc"].stats()["hits"] == 6, "the parent's own figures are untouched"
    finally:
        workers.close()
        parent.close()


def test_a_failing_store_never_raises_and_says_the_figures_are_this_processs(
    memcached_factory: Callable[..., MemcachedServer], make_manager: Callable[..., Any],
    caplog: pytest.LogCaptureFixture,
) -> None:
    server = memcached_factory()
    config = {"mc": {"BACKEND": "memcached", "LOCATION": server.address}}
    manager = make_manager(config, publish_every=EVERY, key_prefix="failing")
    reader = make_manager(config, publish_every=EVERY, key_prefix="failing")
    make_calls(manager, {"mc": (3, 1)})
    assert manager.deployment_stats()["mc"]["scope"] == "deployment"
    server.stop()
    with caplog.at_level(logging.WARNING, logger="regions"):
        time.sleep(EVERY * 3)  # the thread publishes meanwhile, and fails
        rows = [manager.deployment_stats() for _ in range(20)]
        snapshot = manager.deployment_stats(wait=False)
    for stats in [*rows, snapshot]:
        row = stats["mc"]
        assert (row["hits"], row["misses"], row["processes"], row["scope"]) == (3, 1, 1, "process"), row
        assert row["error"], row
    assert len(caplog.records) <= 3, [r.getMessage() for r in caplog.records]  # never one per call

    memcached_factory(port=server.port)  # back, empty: the thread publishes again once it answers
    stats = settle(reader, lambda s: figures(s, "mc")[1::2] == (1, 1), SETTLE)
    assert figures(stats, "mc") == (3, 1, 1, 1, "deployment"), stats["mc"]


def test_a_membership_lost_to_a_race_comes_back_at_the_next_publish(
    shared: dict[str, Any], reader: regions.CacheManager
) -> None:
    writer = regions.CacheManager(shared["config"], **{**shared["options"], "publish_every": 3600})
    try:
        make_calls(writer, {"mc": (2, 1), "files": (1, 1)})
        writer._fleet.publish()
        assert figures(reader.deployment_stats(), "mc")[3] == 1
        for name in ("mc", "files"):  # another process wrote the membership without it
            store = writer[name].store
            store.namespace(f"{store.identity}:{fleet.NAMESPACE}").set_entry(
                fleet_board.MEMBERS,
                regions.backends.contract.make_entry({"v": fleet_board.FORMAT, "members": {}}, 60),
            )
        assert figures(reader.deployment_stats(), "mc")[3] == 0
        writer._fleet.publish()
        stats = reader.deployment_stats()
        assert figures(stats, "mc") == (2, 1, 1, 1, "deployment")
        assert figures(stats, "files") == (1, 1, 1, 1, "deployment")
    finally:
        writer.close()


def test_figures_signed_with_another_secret_are_not_read(
    shared: dict[str, Any], reader: regions.CacheManager
) -> None:
    other = regions.CacheManager(
        shared["config"], **{**shared["options"], "secret": "another-secret-" + uuid.uuid4().hex}
    )
    try:
        make_calls(other, {"mc": (2, 1)})
        other._fleet.publish()
        assert figures(reader.deployment_stats(), "mc")[3] == 0
    finally:
        other.close()


def test_the_thread_starts_at_the_first_lookup_and_publishes_only_after_calls(
    shared: dict[str, Any], reader: regions.CacheManager
) -> None:
    manager = regions.CacheManager(shared["config"], **shared["options"])
    try:
        assert manager._fleet.idle, "a thread before any lookup"
        region = manager["mc"]
        assert not manager._fleet.idle
        time.sleep(EVERY * 3)
        assert figures(reader.deployment_stats(), "mc")[3] == 0, "a process without calls reported"
        region.get("x")
        # a publish may fall between the call's count and its miss's: the next one has both
        # (and the figures are readable before the publisher notes how long its publish took)
        stats = settle(reader, lambda s: figures(s, "mc")[1::2] == (1, 1)
                       and manager._fleet.publish_seconds is not None, SETTLE)
        assert figures(stats, "mc")[1::2] == (1, 1)
        assert manager._fleet.publish_seconds is not None
        print(f"\none publish (memcached + file): {manager._fleet.publish_seconds * 1e3:.2f} ms")
    finally:
        manager.close()
    assert manager._fleet.closed


def test_publishing_leaves_the_application_s_random_sequence_alone(
    shared: dict[str, Any], reader: regions.CacheManager
) -> None:
    """The publisher's jitter comes from the OS: a seeded ``random`` in the application gives the
    same numbers with the thread running (before, each publish drew from the global generator, and
    Hypothesis saw its strategies' randomness move under them)."""
    import random

    manager = regions.CacheManager(shared["config"], **shared["options"])
    try:
        random.seed(1234)
        state = random.getstate()
        manager["mc"].get("x")  # starts the thread; each publish schedules the next with jitter
        # the figures are readable before the publisher notes how long its publish took
        stats = settle(reader, lambda s: figures(s, "mc")[1::2] == (1, 1)
                       and manager._fleet.publish_seconds is not None, SETTLE)
        assert figures(stats, "mc")[1::2] == (1, 1), "nothing was published"
        assert random.getstate() == state
    finally:
        manager.close()


@pytest.mark.parametrize("every", [-1, "5", True, float("nan"), float("inf")])
def test_a_bad_publish_every_names_the_option_and_the_remedy(every: Any) -> None:
    with pytest.raises(ConfigurationError) as info:
        regions.CacheManager({"m": {"BACKEND": "memory"}}, publish_every=every)
    assert info.value.option == "publish_every" and "seconds >= 0" in str(info.value)


def test_figures_in_a_file_region_are_no_entries(make_manager: Any, tmp_path: Path) -> None:
    """The figures live in a dot folder of the region's folder: never counted, culled or cleared
    as entries; an ended process's figures go when the next publish prunes it."""
    config = {"files": {"BACKEND": "file", "LOCATION": str(tmp_path / "files")}}
    managers = [make_manager(config, publish_every=3600, key_prefix="figs") for _ in range(2)]
    for i, manager in enumerate(managers):
        manager["files"].set(f"k{i}", i)
        manager._fleet.publish()
    region = managers[0]["files"]
    assert region.count() == 2
    assert region.clear() is True
    assert region.count() == 0
    figures = list((tmp_path / "files" / ".bookkeeping").rglob("*.entry"))
    assert len(figures) == 3, figures  # the members entry and one per process
