"""The example project's synced "local" and tiered "hot" regions under a real gunicorn with 3
workers: ``manage.py regions clear local``, run from a shell (another process), reaches every
worker; a "hot" value computed by one worker is read by the others, never computed again.

Each worker caches the category menu once (``/api/menu/`` answers who built it and when); after
the command, every worker must answer a menu it built again, within ``sync_interval`` (1 s) +
0.5 s of the command's end. The delays go to /tmp/regions-figures/sync_delays.txt.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.django.helpers import example_env, start_gunicorn, stop, wait_for_http

ROOT = Path(__file__).resolve().parents[2]
WORKERS = 3
SYNC_INTERVAL = 1.0  # config/settings.py


def fetch(base: str, path: str, n: int) -> list[dict[str, float]]:
    def one(_: int) -> dict[str, float]:
        with urllib.request.urlopen(f"{base}{path}", timeout=30) as response:
            return json.loads(response.read())

    with ThreadPoolExecutor(6) as pool:
        return list(pool.map(one, range(n), timeout=120))


def menus(base: str, n: int) -> list[dict[str, float]]:
    return fetch(base, "/api/menu/", n)


def every_worker_menu(base: str) -> dict[int, float]:
    """``{worker pid: when it built its menu}`` once every worker has answered (gunicorn's workers
    boot one by one: on a busy machine the first answers alone for a while)."""
    built: dict[int, float] = {}
    deadline = time.monotonic() + 60
    while len(built) < WORKERS and time.monotonic() < deadline:
        for menu in menus(base, 30):
            built.setdefault(int(menu["built_by"]), menu["built_at"])
    assert len(built) == WORKERS, f"only workers {sorted(built)} answered"
    return built


@pytest.fixture
def gunicorn(memcached_server: str, tmp_path: Path) -> Iterator[tuple[str, dict[str, str]]]:
    """``(base URL, environment)`` of the example project under gunicorn with WORKERS workers."""
    env = example_env(memcached_server, tmp_path)
    proc, base = start_gunicorn("config.wsgi:application", env, WORKERS)
    try:
        wait_for_http(f"{base}/api/menu/", proc)
        yield base, env
    finally:
        stop(proc)


def test_a_tiered_value_is_computed_by_one_worker_and_read_by_all(
    gunicorn: tuple[str, dict[str, str]],
) -> None:
    base, _env = gunicorn
    every_worker_menu(base)  # all of them up, before the value is computed
    first = fetch(base, "/api/summary/", 1)[0]  # computed by the worker that answers it
    answers = fetch(base, "/api/summary/", 90)
    built = {(a["built_by"], a["built_at"]) for a in answers} - {(first["built_by"], first["built_at"])}
    assert not built, f"computed again by workers {sorted(b for b, _ in built)}"
    served_by = {int(m["built_by"]) for m in menus(base, 60)}  # the menu is built by each worker
    assert len(served_by) >= 2, f"only worker(s) {served_by} answered: the test needs several"


def test_clear_from_a_shell_reaches_every_gunicorn_worker(gunicorn: tuple[str, dict[str, str]]) -> None:
    base, env = gunicorn
    built = every_worker_menu(base)
    again = menus(base, 60)  # cached: every worker answers the menu it built first
    assert all(m["built_at"] == built[int(m["built_by"])] for m in again), "the menu was not cached"

    done = subprocess.run(
        [sys.executable, "manage.py", "regions", "clear", "local"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120,
    )
    cleared = time.monotonic()
    assert done.returncode == 0, done.stderr
    rebuilt: dict[int, float] = {}
    while len(rebuilt) < WORKERS and time.monotonic() < cleared + 30:
        for menu in menus(base, 12):
            pid = int(menu["built_by"])
            if menu["built_at"] != built[pid] and pid not in rebuilt:
                rebuilt[pid] = time.monotonic() - cleared
        time.sleep(0.02)
    kept = set(built) - set(rebuilt)
    assert not kept, f"workers that kept serving the cleared menu: {kept}"
    slow = {pid: round(t, 2) for pid, t in rebuilt.items() if t > SYNC_INTERVAL + 0.5}
    assert not slow, f"workers saw the clear later than sync_interval + 0.5 s: {slow}"
    figures = Path("/tmp/regions-figures")
    figures.mkdir(exist_ok=True)
    with open(figures / "sync_delays.txt", "a") as f:
        delays = sorted(rebuilt.values())
        f.write(f"gunicorn x{WORKERS} `regions clear local`: delays {[round(t * 1000) for t in delays]} ms "
                "(upper bounds: the first request each worker answered after the clear)\n")
