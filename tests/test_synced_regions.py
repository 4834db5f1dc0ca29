"""Synced ``memory`` regions (``sync_with``) and ``tiered`` regions across real processes.

The test process and 2 or 4 spawned processes (``tests/sync_workers.py``) build managers from the
same settings over one memcached server and one folder. The test changes the "database" (a file)
and invalidates in its own process; every other process must serve the new value within
``sync_interval`` + 0.5 s, and nothing it did not invalidate may be recomputed. Delays go to
``/tmp/regions-figures/sync_delays.txt`` for the closing note.
"""

from __future__ import annotations

import functools
import multiprocessing
import os
import statistics
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

import regions
from tests import sync_workers as w
from tests.conftest import made_for_the_test

INTERVAL = 0.3
BOUND = INTERVAL + 0.5
FIGURES = Path("/tmp/regions-figures")
REGIONS = ("local", "flocal", "hot", "fhot")


class Deployment:
    """The settings every process uses, the test's own manager, the data file and the logs."""

    def __init__(self, memcached: str, tmp_path: Path, region: str, tagged: bool = False) -> None:
        self.region = region
        self.tmp = tmp_path
        self.data = str(tmp_path / "data.txt")
        w.write_version(self.data, 1)
        self.settings = {
            "config": w.config(memcached, str(tmp_path / "files"), INTERVAL),
            "prefix": "s" + uuid.uuid4().hex[:10],
            "secret": "sync-secret-" + uuid.uuid4().hex,
            "target": 2,
            "tagged": tagged,
        }
        self.manager = regions.CacheManager(
            self.settings["config"], key_prefix=self.settings["prefix"], secret=self.settings["secret"]
        )
        self.value = w.make_reader(self.manager, region, self.data, self.log("test"), tagged)

    def log(self, who: str | int) -> str:
        return str(self.tmp / f"computed-{who}.log")

    def close(self) -> None:
        self.manager.close()


def run_watchers(d: Deployment, processes: int, keys: list[int], act: Any) -> list[tuple[int, dict, dict]]:
    ctx = multiprocessing.get_context("spawn")
    ready, out, go = ctx.Queue(), ctx.Queue(), ctx.Event()
    deadline = time.monotonic() + 60
    procs = [
        ctx.Process(
            target=w.watch,
            args=(d.settings, d.region, d.data, d.log(i), keys, ready, go, out, deadline),
        )
        for i in range(processes)
    ]
    for p in procs:
        p.start()
    try:
        w.wait_ready(ready, procs)
        act()
        go.set()
        return [out.get(timeout=90) for _ in procs]
    finally:
        for p in procs:
            p.join(30)
            if p.is_alive():
                p.kill()


def record_delays(label: str, delays: list[float]) -> None:
    FIGURES.mkdir(exist_ok=True)
    with open(FIGURES / "sync_delays.txt", "a") as f:
        f.write(
            f"{label}: n={len(delays)} median={statistics.median(delays) * 1000:.0f} ms "
            f"max={max(delays) * 1000:.0f} ms\n"
        )


@pytest.fixture
def deployment(memcached_server: str, tmp_path: Path, request: pytest.FixtureRequest) -> Any:
    # make(region, tagged=False)
    yield from made_for_the_test(functools.partial(Deployment, memcached_server, tmp_path), Deployment.close)


@pytest.mark.parametrize("region", REGIONS)
@pytest.mark.parametrize(
    ("op", "processes"),
    [("invalidate", 2), ("invalidate", 4), ("invalidate_all", 4), ("clear", 4), ("tags", 4)],
)
def test_an_invalidation_in_one_process_reaches_every_other(
    deployment: Any, region: str, op: str, processes: int
) -> None:
    d = deployment(region, tagged=op == "tags")
    keys = [1, 2, 3]
    for x in keys:
        assert d.value(x) == (x, 1)
    changed = [2] if op in ("invalidate", "tags") else keys  # the entries the operation invalidates
    d.settings["changed"] = changed
    start = 0.0

    def act() -> None:
        nonlocal start
        w.write_version(d.data, 2)
        start = time.monotonic()
        if op == "invalidate":
            assert d.value.invalidate(2) is True
        elif op == "tags":
            assert d.manager.invalidate_tags("item:2") is True
        elif op == "invalidate_all":
            assert d.value.invalidate_all() is True
        else:
            assert d.manager[region].clear() is True

    results = run_watchers(d, processes, keys, act)
    delays = []
    for pid, seen, _stats in results:
        missing = [x for x in changed if x not in seen]
        assert not missing, f"process {pid} still served version 1 of keys {missing} after 60 s"
        late = {x: round(seen[x] - start, 3) for x in changed if seen[x] - start > BOUND}
        assert not late, f"process {pid} saw the {op} after more than {BOUND} s: {late}"
        delays += [max(0.0, seen[x] - start) for x in changed]
        kept = [x for x in keys if x not in changed]
        assert not [x for x in kept if x in seen], f"process {pid}: {op} of key 2 changed other keys"
    record_delays(f"{region} {op} x{processes} processes", delays)
    for i in range(processes):  # each process computed only what was invalidated, once
        after_warm_up = w.computed(d.log(i))
        if region in ("hot", "fhot"):  # warmed from the shared tier: the test process computed
            assert sorted(after_warm_up) == sorted(changed) or all(after_warm_up.count(x) <= 1 for x in keys)
        else:
            warm, rest = after_warm_up[: len(keys)], after_warm_up[len(keys) :]
            assert warm == keys
            assert sorted(set(rest)) == sorted(changed), f"process {i} recomputed {rest}"


@pytest.mark.parametrize("tagged", [False, True])
@pytest.mark.parametrize("region", ["hot", "fhot"])
def test_a_tiered_value_computed_once_is_read_by_every_process(
    deployment: Any, region: str, tagged: bool
) -> None:
    """Tagged too: every process compares the shared tier's tag versions, not versions of its own."""
    d = deployment(region, tagged)
    keys = list(range(10))
    assert [d.value(x) for x in keys] == [(x, 1) for x in keys]
    ctx = multiprocessing.get_context("spawn")
    out = ctx.Queue()
    procs = [
        ctx.Process(target=w.read_once, args=(d.settings, region, d.data, d.log(i), keys, out))
        for i in range(4)
    ]
    for p in procs:
        p.start()
    results = [out.get(timeout=60) for _ in procs]
    for p in procs:
        p.join(30)
    assert all(values == [(x, 1) for x in keys] for _, values in results)
    assert [w.computed(d.log(i)) for i in range(4)] == [[]] * 4, "a process computed again"
    assert w.computed(d.log("test")) == keys


@pytest.mark.parametrize("region", REGIONS)
def test_counters_in_stats(deployment: Any, region: str) -> None:
    """LocalSyncCache's counters: own clears, clears and invalidations received from others."""
    d = deployment(region)
    other = regions.CacheManager(
        d.settings["config"], key_prefix=d.settings["prefix"], secret=d.settings["secret"]
    )
    try:
        f = w.make_reader(other, region, d.data, d.log("other"))
        assert f(1) == (1, 1)
        d.manager[region].clear()
        d.value.invalidate(1)
        time.sleep(INTERVAL + 0.05)
        f(1)
        stats = other[region].stats()
        assert (stats["received_clears"], stats["received_invalidations"]) == (1, 1), stats
        assert d.manager[region].stats()["own_clears"] == 1
        assert stats["sync_failures"] == 0 and stats["resets"] == 0
    finally:
        other.close()


def test_settings_that_name_no_shared_region_are_refused() -> None:
    with pytest.raises(regions.ConfigurationError,
                       match=r"'local'.*sync_with='nowhere'.*memcached, redis or file"):
        regions.CacheManager({"local": {"BACKEND": "memory", "OPTIONS": {"sync_with": "nowhere"}}})
    with pytest.raises(regions.ConfigurationError, match=r"'hot'.*over='mem' names a 'memory' region"):
        regions.CacheManager(
            {"mem": {"BACKEND": "memory"}, "hot": {"BACKEND": "tiered", "OPTIONS": {"over": "mem"}}}
        )
    with pytest.raises(regions.ConfigurationError, match=r"'hot': a tiered region needs OPTIONS 'over'"):
        regions.CacheManager({"hot": {"BACKEND": "tiered"}})
    assert os.environ.get("REGIONS_NEVER_SET") is None


@pytest.mark.parametrize("region", ["local", "hot"])
def test_hits_read_the_shared_storage_once_per_interval_not_per_call(
    deployment: Any, memcached_stats: Any, region: str
) -> None:
    d = deployment(region)
    assert d.value(1) == (1, 1)
    before = memcached_stats()["cmd_get"]
    start = time.monotonic()
    hits = 0
    while time.monotonic() - start < 3 * INTERVAL:
        assert d.value(1) == (1, 1)
        hits += 1
    gets = memcached_stats()["cmd_get"] - before
    looks = 3 + 1  # one per interval (and one more where the window straddles a boundary)
    assert hits > 1000
    assert gets <= looks, f"{gets} memcached gets for {hits} hits in {3 * INTERVAL} s"
