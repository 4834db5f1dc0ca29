"""Deployment-wide stats with Django: ``manage.py regions stats`` and the /regions/ dashboard show the
totals of every process (real gunicorn workers, real spawned processes), and how many reported.
"""

from __future__ import annotations

import json
import multiprocessing
import re
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from io import StringIO
from pathlib import Path
from typing import Any

import pytest
from django.core.management import call_command
from django.test import Client

import regions
from django_regions import conf
from tests.django.helpers import example_env, free_port, start_gunicorn, stop, wait_for_http
from tests.fleet_workers import counting_process

ROOT = Path(__file__).resolve().parents[2]
WORKERS = 3
REQUESTS = 120
EVERY = 0.3


def stats_rows(output: str) -> dict[str, list[str]]:
    """``manage.py regions stats`` rows by region name: [hits, misses, ..., processes, scope]."""
    return {line.split()[0]: line.split() for line in output.splitlines()[2:]
            if line.strip() and not line.startswith("(")}


def test_stats_command_shows_the_totals_of_every_gunicorn_worker(
    memcached_server: str, tmp_path: Path
) -> None:
    """3 preloaded workers (and their master, which warmed the cache up: 1 miss) serve REQUESTS
    prices, one cached lookup each; the command, another process, shows the sum and who reported."""
    env = example_env(memcached_server, tmp_path, REGIONS_TEST_PUBLISH_EVERY=str(EVERY))
    proc, base = start_gunicorn("tests.django.fleet_wsgi:application", env, WORKERS, preload=True)
    try:
        wait_for_http(f"{base}/echo/?n=1", proc)  # the request region only: no cached lookup counted

        def one(i: int) -> str:
            with urllib.request.urlopen(f"{base}/api/price/{i % 40}/", timeout=30) as response:
                json.loads(response.read())
                return response.headers["X-Worker-Pid"]

        with ThreadPoolExecutor(8) as pool:
            pids = set(pool.map(one, range(REQUESTS), timeout=120))
        assert len(pids) >= 2, f"only worker(s) {pids} answered: the test needs several"
        want = (REQUESTS + 1, len(pids) + 1)  # lookups (the master's warm-up miss too), processes
        deadline = time.monotonic() + 30
        while True:
            run = subprocess.run([sys.executable, "manage.py", "regions", "stats"], cwd=ROOT, env=env,
                                 capture_output=True, text=True, timeout=60)
            assert run.returncode == 0, run.stderr
            row = stats_rows(run.stdout)["functions"]
            hits, misses, processes, scope = int(row[1]), int(row[2]), int(row[-2]), row[-1]
            if (hits + misses, processes) == want or time.monotonic() > deadline:
                break
            time.sleep(EVERY)
    finally:
        output = stop(proc)
    print(f"\n{run.stdout}")
    assert scope == "deployment"
    assert (hits + misses, processes) == want, f"{run.stdout}\n{output[-2000:]}"
    assert misses >= 1 and hits > REQUESTS // 2
    assert stats_rows(run.stdout)["request"][-1] == "per-process"
    assert "per-process: no shared storage for 'request'" in run.stdout


@pytest.fixture
def spawned() -> Iterator[tuple[Any, list[Any]]]:
    ctx = multiprocessing.get_context("spawn")
    procs: list[Any] = []
    yield ctx, procs
    for _, stop_event in procs:
        stop_event.set()
    for proc, _ in procs:
        proc.join(timeout=30)
        if proc.is_alive():
            proc.kill()


def test_dashboard_shows_the_totals_of_every_process(
    settings: Any, cache_regions: dict[str, Any], region_prefix: str, spawned: tuple[Any, list[Any]]
) -> None:
    ctx, procs = spawned
    done = ctx.Queue()
    secret, _ = conf.signing_secrets()  # the other processes of the project sign as this one does
    options = {"key_prefix": region_prefix, "secret": secret, "publish_every": EVERY}
    plans = [{"functions": (10, 2), "files": (3, 1)}, {"functions": (20, 4), "files": (5, 1)}]
    for plan in plans:
        stop_event = ctx.Event()
        proc = ctx.Process(target=counting_process, args=(cache_regions, options, plan, done, stop_event))
        proc.start()
        procs.append((proc, stop_event))
    for _ in plans:
        pid, failure = done.get(timeout=60)
        assert failure is None, failure
    settings.REGIONS_DASHBOARD_PUBLIC = True  # who may see it: tests/django/test_django_dashboard.py
    client = Client()

    def card(html: str, name: str) -> str:
        found = re.search(rf'id="region-{name}".*?</article>', html, re.S)
        assert found, html
        return found.group(0)

    deadline = time.monotonic() + 20
    while True:
        html = client.get("/regions/").content.decode()
        functions = card(html, "functions")
        if "totals of <strong class=\"processes\">2</strong> processes" in functions and \
                'Hits</div><div class="v">30<' in functions or time.monotonic() > deadline:
            break
        time.sleep(EVERY)
    assert 'totals of <strong class="processes">2</strong> processes' in functions, functions
    assert 'Hits</div><div class="v">30<' in functions and 'Misses</div><div class="v">6<' in functions
    files = card(html, "files")
    assert 'Hits</div><div class="v">8<' in files and 'Misses</div><div class="v">2<' in files
    assert "per process: no shared storage" in card(html, "request")


def test_stats_command_says_when_the_shared_storage_failed(settings: Any) -> None:
    settings.CACHE_REGIONS = {"gone": {"BACKEND": "memcached", "LOCATION": f"127.0.0.1:{free_port()}",
                                       "OPTIONS": {"connect_timeout": 0.2}}}
    regions.get_manager()["gone"].get("x")  # refused: one miss, one error, the server marked down
    out = StringIO()
    call_command("regions", "stats", stdout=out)
    row = stats_rows(out.getvalue())["gone"]
    assert (row[1], row[2], row[-2], row[-1]) == ("0", "1", "1", "this-process"), out.getvalue()
    assert "(this-process: region 'gone': its shared storage failed (" in out.getvalue()


def test_the_publishing_interval_is_a_setting(settings: Any) -> None:
    settings.REGIONS_STATS_EVERY = 0.25
    assert regions.get_manager()._fleet.every == 0.25
    settings.REGIONS_STATS_EVERY = 0
    assert regions.get_manager()._fleet.every == 0
