"""Tags across real processes: 2 and 4 spawned watchers share one memcached or one folder with the
test process, which changes the data and invalidates its tag; every watcher must get the new value
within 1.5 s, and none may get an older value afterwards. Delays (median, max) go to the figures
file of tests/test_tags_cost.py."""

from __future__ import annotations

import multiprocessing
import os
import queue
import statistics
import time
import uuid

import pytest

import regions
from tests import tags_workers
from tests.test_tags_cost import record

ROUNDS = 10
BOUND = 1.5


def write_truth(path: str, value: int) -> None:
    tmp = f"{path}.tmp"
    with open(tmp, "w") as f:
        f.write(str(value))
    os.replace(tmp, path)  # the "commit": readers see the old number or the new one


def wait_ready(workers: list, ready, reports) -> set[int]:
    """The watchers' pids once each has cached its value; fails with what a dead one said."""
    pids: set[int] = set()
    deadline = time.monotonic() + 120
    while len(pids) < len(workers):
        try:
            pids.add(ready.get(timeout=0.5))
            continue
        except queue.Empty:
            pass
        dead = [w.exitcode for w in workers if not w.is_alive()]
        if dead or time.monotonic() > deadline:
            said = []
            while True:
                try:
                    said.append(reports.get(timeout=0.5))
                except queue.Empty:
                    break
            pytest.fail(f"{len(pids)} of {len(workers)} watchers ready; exit codes {dead}; reports {said}")
    return pids


@pytest.mark.parametrize("processes", [2, 4])
@pytest.mark.parametrize("backend", ["memcached", "file"])
def test_a_tag_invalidated_in_one_process_reaches_every_other(
    region_config, tmp_path, backend: str, processes: int
) -> None:
    config = {"r": region_config(backend)}
    prefix, secret = "tp" + uuid.uuid4().hex[:8], "s" * 32
    truth = str(tmp_path / "truth")
    write_truth(truth, 0)
    ctx = multiprocessing.get_context("spawn")
    ready, reports, stop = ctx.Queue(), ctx.Queue(), ctx.Event()
    workers = [
        ctx.Process(target=tags_workers.watch, args=(config, prefix, secret, truth, ready, reports, stop))
        for _ in range(processes)
    ]
    for w in workers:
        w.start()
    manager = regions.CacheManager(config, key_prefix=prefix, secret=secret)
    delays: list[float] = []
    problems: list[tuple] = []
    try:
        pids = wait_ready(workers, ready, reports)
        for value in range(1, ROUNDS + 1):
            time.sleep(0.05)
            write_truth(truth, value)
            started = time.time()
            assert manager.invalidate_tags("item:1") is True
            waiting = set(pids)
            deadline = time.monotonic() + BOUND + 1.0
            while waiting and time.monotonic() < deadline:
                try:
                    kind, pid, got, at = reports.get(timeout=max(0.01, deadline - time.monotonic()))
                except queue.Empty:
                    break
                if kind == "seen" and got == value:
                    waiting.discard(pid)
                    delays.append(at - started)
                elif kind != "seen" or got > value:
                    problems.append((kind, pid, got))
            assert not waiting, f"round {value}: processes {waiting} never got the new value"
    finally:
        stop.set()
        for w in workers:
            w.join(timeout=30)
        manager.close()
    while True:
        try:
            kind, pid, got, _ = reports.get(timeout=0.5)
        except queue.Empty:
            break
        if kind == "stats":
            assert got["errors"] == 0 and got["rejected"] == 0, got
        else:
            problems.append((kind, pid, got))
    assert not problems, problems
    assert all(w.exitcode == 0 for w in workers)
    assert len(delays) == ROUNDS * processes
    assert max(delays) <= BOUND, sorted(delays)[-5:]
    record([
        f"{backend}, {processes} processes + the invalidating one, {ROUNDS} rounds: tag propagation "
        f"median {statistics.median(delays) * 1000:.1f} ms, max {max(delays) * 1000:.1f} ms "
        f"(watchers call every {tags_workers.PAUSE * 1000:g} ms)"
    ], __name__)
