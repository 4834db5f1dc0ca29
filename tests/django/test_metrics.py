"""Prometheus metrics (django_regions.metrics): real calls on real regions (memcached and memory),
scraped from the example project's /metrics and parsed as Prometheus parses them.

In this process: exact hit and miss counts, a planted entry counted as rejected, a killed memcached
counted as errors, settings rebuilds and ``reset_stats()`` never counted twice nor subtracted, a
forked child never counting its parent's figures. Then real gunicorn: 3 preloaded workers sharing
``PROMETHEUS_MULTIPROC_DIR``, whose totals equal the requests sent whichever worker is scraped.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from django.test import Client
from prometheus_client.parser import text_string_to_metric_families
from pymemcache.client.base import Client as RawClient

import regions
from django_regions import metrics
from tests.django.helpers import example_env, start_gunicorn, stop, wait_for_http

ROOT = Path(__file__).resolve().parents[2]
COUNTED = [f"regions_{name}_total" for name in metrics.COUNTERS]
LATENCY_COUNT = "regions_backend_latency_seconds_count"

Scraped = dict[tuple[str, str, str], float]  # (sample, region, backend) -> value


@regions.region("functions")
def double(x: int) -> int:
    return 2 * x


@regions.region("mem")
def triple(x: int) -> int:
    return 3 * x


@regions.region("gone")
def quadruple(x: int) -> int:
    return 4 * x


def parse(text: str) -> Scraped:
    values: Scraped = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            region = sample.labels.get("region")
            if region is not None and "le" not in sample.labels:
                values[sample.name, region, sample.labels["backend"]] = sample.value
    return values


def scrape() -> Scraped:
    response = Client().get("/metrics")
    assert response.status_code == 200, response.content
    assert response["Content-Type"].startswith("text/plain")
    return parse(response.content.decode())


def added(before: Scraped, after: Scraped, region: str, backend: str) -> dict[str, float]:
    """Each counter's increase between two scrapes, and the latency histogram's (``latency_count``)."""
    out = {}
    for name, sample in [*zip(metrics.COUNTERS, COUNTED, strict=True), ("latency_count", LATENCY_COUNT)]:
        key = (sample, region, backend)
        assert key in after, f"{key} missing from {sorted(after)}"
        out[name] = after[key] - before.get(key, 0.0)
    return out


def stats_added(before: dict[str, Any], region: regions.Region) -> dict[str, float]:
    now = region.stats()
    return {name: now[name] - before[name] for name in metrics.COUNTERS}


@pytest.fixture
def mem_too(settings: Any, regions_config: dict[str, Any]) -> None:
    settings.CACHE_REGIONS = {**regions_config, "mem": {"BACKEND": "memory"}}


def test_hits_and_misses_of_memcached_and_memory_regions(mem_too: None) -> None:
    before = scrape()
    functions = regions.get_manager()["functions"]
    own_before = functions.stats()
    for _ in range(3):
        for x in range(5):
            assert double(x) == 2 * x  # 5 misses, then 10 hits
    for x in range(4):
        triple(x), triple(x), triple(x)  # 4 misses, 8 hits (the inline fast path)
    after = scrape()

    memcached = added(before, after, "functions", "memcached")
    assert (memcached["hits"], memcached["misses"], memcached["sets"]) == (10, 5, 5)
    assert {k: v for k, v in memcached.items() if k != "latency_count"} == stats_added(own_before, functions)
    assert memcached["latency_count"] >= 5  # every write, one read in 8
    memory = added(before, after, "mem", "memory")
    assert (memory["hits"], memory["misses"], memory["sets"]) == (8, 4, 4)
    assert memory["latency_count"] == 0  # in-process stores are not timed
    assert all(v >= 0 for v in [*memcached.values(), *memory.values()])
    assert ("regions_hits_total", "request", "request") in after


def test_a_planted_entry_counts_as_rejected(memcached_server: str) -> None:
    before = scrape()
    key = double.cache_key(100)
    host, port = memcached_server.rsplit(":", 1)
    raw = RawClient((host, int(port)), connect_timeout=2, timeout=2)
    try:
        assert raw.set(key, b"\x00 not one of ours \xff" * 3, noreply=False)
    finally:
        raw.close()
    assert double(100) == 200 and double(100) == 200
    got = added(before, scrape(), "functions", "memcached")
    assert (got["rejected"], got["misses"], got["hits"]) == (1, 1, 1)


def test_a_killed_memcached_counts_as_errors(
    settings: Any, regions_config: dict[str, Any], memcached_factory: Any
) -> None:
    server = memcached_factory()
    gone = {"BACKEND": "memcached", "LOCATION": server.address, "OPTIONS": {"connect_timeout": 0.5}}
    settings.CACHE_REGIONS = {**regions_config, "gone": gone}
    assert quadruple(1) == 4
    before = scrape()
    region = regions.get_manager()["gone"]
    own_before = region.stats()
    server.stop()  # SIGKILL: connections are refused from now on
    assert [quadruple(x) for x in range(2, 6)] == [8, 12, 16, 20]
    got = added(before, scrape(), "gone", "memcached")
    assert got["errors"] >= 1 and got["misses"] == 4
    assert {k: v for k, v in got.items() if k != "latency_count"} == stats_added(own_before, region)


def test_rebuilt_regions_and_reset_stats_are_never_counted_twice_nor_subtracted(
    settings: Any, mem_too: None, region_prefix: str
) -> None:
    first = scrape()  # the regions are followed from here on
    double(1), double(1), triple(1), triple(1)
    settings.REGIONS_KEY_PREFIX = region_prefix + "-again"  # new regions, counting from zero
    double(1), double(1), double(2), triple(1)
    second = scrape()
    functions, mem = added(first, second, "functions", "memcached"), added(first, second, "mem", "memory")
    assert (functions["hits"], functions["misses"]) == (2, 3)
    assert (mem["hits"], mem["misses"]) == (1, 2)

    for x in range(10, 14):
        triple(x), triple(x)
    third = scrape()
    assert added(second, third, "mem", "memory")["hits"] == 4
    regions.get_manager()["mem"].reset_stats()
    triple(20), triple(20)  # fewer than before the reset: seen as a restart, not as -3
    fourth = scrape()
    got = added(third, fourth, "mem", "memory")
    assert (got["hits"], got["misses"]) == (1, 1)
    assert all(v >= 0 for v in got.values())


@pytest.mark.skipif(not hasattr(os, "fork"), reason="os.fork")
def test_a_forked_child_counts_its_own_calls_only(mem_too: None) -> None:
    base = scrape()
    for x in range(6):
        triple(x)  # 6 misses in the parent, not flushed yet when it forks
    pid = os.fork()
    if pid == 0:  # the child: exit status 0 when it counted 2 misses and 1 hit, its own calls only
        code = 1
        try:
            triple(100), triple(100), triple(101)
            got = added(base, scrape(), "mem", "memory")
            code = 0 if (got["misses"], got["hits"]) == (2, 1) else 3
        finally:
            os._exit(code)
    deadline = time.monotonic() + 30
    while (done := os.waitpid(pid, os.WNOHANG))[0] == 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    if done[0] == 0:
        os.kill(pid, 9)
        os.waitpid(pid, 0)
        pytest.fail("the forked child did not finish within 30 s")
    assert os.waitstatus_to_exitcode(done[1]) == 0, "the child counted the parent's figures"
    got = added(base, scrape(), "mem", "memory")
    assert (got["misses"], got["hits"]) == (6, 0)


def test_who_may_read_it(settings: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    settings.REGIONS_METRICS_PRIVATE = True
    assert Client().get("/metrics").status_code == 403
    settings.REGIONS_DASHBOARD_PUBLIC = True  # the dashboard's rule: open to all
    assert Client().get("/metrics").status_code == 200
    monkeypatch.setattr(metrics, "available", lambda: False)
    response = Client().get("/metrics")
    assert response.status_code == 501 and b"pip install 'cache-regions[prometheus]'" in response.content


OURS = {*(name.removesuffix("_total") for name in COUNTED), "regions_backend_latency_seconds"}


def families(text: str) -> set[str]:
    """The metric families in ``text`` (a counter's ``_created`` samples parse as one of their own)."""
    return {family.name.removesuffix("_created") for family in text_string_to_metric_families(text)}


def test_only_the_regions_metrics_are_served() -> None:
    """/metrics serves the regions' own registry: what else the process registers on
    prometheus_client's default registry (another app's metrics, its process and platform
    collectors) is not shown to whoever may scrape it."""
    from prometheus_client import REGISTRY, Counter

    foreign = Counter("someone_elses_logins", "Logins, by user", ["user"])
    try:
        foreign.labels(user="alice").inc()
        double(1)
        response = Client().get("/metrics")
    finally:
        REGISTRY.unregister(foreign)
    assert response.status_code == 200
    text = response.content.decode()
    assert "someone_elses" not in text and "alice" not in text
    assert families(text) == OURS


MULTIPROCESS_SCRAPE = """
import django
django.setup()
from django.test import RequestFactory
from prometheus_client import Counter
from django_regions.metrics import metrics_view
from config.shop import services

Counter("someone_elses_logins", "Logins, by user", ["user"]).labels(user="alice").inc()
services.product_price(1)
print(metrics_view(RequestFactory().get("/metrics")).content.decode())
"""


def test_only_the_regions_metrics_are_served_from_the_multiprocess_folder(
    memcached_server: str, tmp_path: Path
) -> None:
    """Under ``PROMETHEUS_MULTIPROC_DIR`` every metric of every worker is in the folder: the view
    sums the regions' only."""
    prom = tmp_path / "prometheus"
    prom.mkdir()
    env = example_env(memcached_server, tmp_path, PROMETHEUS_MULTIPROC_DIR=str(prom))
    run = subprocess.run([sys.executable, "-c", MULTIPROCESS_SCRAPE], cwd=ROOT, env=env, capture_output=True,
                         text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert "someone_elses" not in run.stdout and "alice" not in run.stdout
    got = parse(run.stdout)
    calls = [got.get((f"regions_{n}_total", "functions", "memcached"), 0.0) for n in ("hits", "misses")]
    assert sum(calls) == 1, run.stdout  # the example's prefix: another test may have stored it
    assert families(run.stdout) <= OURS


def test_the_app_never_imports_prometheus_client() -> None:
    code = ("import sys, django; django.setup(); import django_regions.views, django_regions.conf; "
            "assert 'prometheus_client' not in sys.modules, 'imported'")
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "config.settings"}  # REGIONS_VAR_DIR: tests' temp
    run = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True,
                         timeout=60)
    assert run.returncode == 0, run.stderr


WORKERS = 3
REQUESTS = 90


def test_gunicorn_workers_add_up_whichever_worker_is_scraped(memcached_server: str, tmp_path: Path) -> None:
    """3 workers forked from a master that used the region (--preload: its miss is not theirs)."""
    prom = tmp_path / "prometheus"
    prom.mkdir()
    env = example_env(memcached_server, tmp_path, PROMETHEUS_MULTIPROC_DIR=str(prom))
    proc, base = start_gunicorn("tests.django.preload_wsgi:application", env, WORKERS, preload=True)

    def get(path: str) -> tuple[str, str]:
        with urllib.request.urlopen(f"{base}{path}", timeout=30) as response:
            return response.headers["X-Worker-Pid"], response.read().decode()

    def total(text: str) -> tuple[float, float]:
        got = parse(text)
        def value(sample: str) -> float:
            return got.get((sample, "functions", "memcached"), 0.0)

        return value("regions_hits_total") + value("regions_misses_total"), value(LATENCY_COUNT)

    try:
        wait_for_http(f"{base}/echo/?n=1", proc)  # the request region only: nothing counted
        with ThreadPoolExecutor(6) as pool:
            pids = {pid for pid, _ in pool.map(lambda i: get(f"/api/price/{i % 30}/"), range(REQUESTS),
                                               timeout=120)}
        assert len(pids) >= 2, f"only worker(s) {pids} answered: the test needs several"
        deadline = time.monotonic() + 30  # each worker flushes every 2 s
        while (first := total(get("/metrics")[1]))[0] != REQUESTS and time.monotonic() < deadline:
            time.sleep(0.2)
        with ThreadPoolExecutor(4) as pool:
            scrapes = list(pool.map(lambda _: get("/metrics"), range(12), timeout=120))
    finally:
        output = stop(proc)
    assert first[0] == REQUESTS, f"{first}\n{output[-2000:]}"
    assert first[1] > 0, "no latency observed"
    assert {total(text)[0] for _, text in scrapes} == {REQUESTS}, output[-2000:]
    answering = {pid for pid, _ in scrapes}
    assert len(answering) >= 2, f"only worker(s) {answering} answered the scrapes"
    assert len(list(prom.glob("counter_*.db"))) >= len(pids)
