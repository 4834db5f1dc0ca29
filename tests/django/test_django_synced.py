"""The example project's synced "local" region under a real gunicorn with 3 workers:
``manage.py regions clear local``, run from a shell (another process), reaches every worker.

Each worker caches the category menu once (``/api/menu/`` answers who built it and when); after
the command, every worker must answer a menu it built again, within ``sync_interval`` (1 s) +
0.5 s of the command's end. The delays go to /tmp/regions-figures/sync_delays.txt.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.django.helpers import free_port, stop, wait_for_http

ROOT = Path(__file__).resolve().parents[2]
WORKERS = 3
SYNC_INTERVAL = 1.0  # config/settings.py


def menus(base: str, n: int) -> list[dict[str, float]]:
    def one(_: int) -> dict[str, float]:
        with urllib.request.urlopen(f"{base}/api/menu/", timeout=30) as response:
            return json.loads(response.read())

    with ThreadPoolExecutor(6) as pool:
        return list(pool.map(one, range(n), timeout=120))


def test_clear_from_a_shell_reaches_every_gunicorn_worker(memcached_server: str, tmp_path: Path) -> None:
    gunicorn = os.path.join(os.path.dirname(sys.executable), "gunicorn")
    if shutil.which("gunicorn", path=os.path.dirname(sys.executable)) is None:
        pytest.fail("gunicorn is part of the test extras: pip install -e '.[test]'", pytrace=False)
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "config.settings",
        "REGIONS_MEMCACHED": memcached_server,
        "REGIONS_VAR_DIR": str(tmp_path / "var"),
        "DJANGO_DEBUG": "0",
    }
    port = free_port()
    cmd = [gunicorn, "--workers", str(WORKERS), "--bind", f"127.0.0.1:{port}", "--log-level", "warning",
           "config.wsgi:application"]
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for_http(f"{base}/api/menu/", proc)
        built: dict[int, float] = {}
        deadline = time.monotonic() + 60
        while len(built) < WORKERS and time.monotonic() < deadline:
            for menu in menus(base, 30):
                built.setdefault(int(menu["built_by"]), menu["built_at"])
        assert len(built) == WORKERS, f"only workers {sorted(built)} answered"
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
    finally:
        output = stop(proc)
    kept = set(built) - set(rebuilt)
    assert not kept, f"workers that kept serving the cleared menu: {kept}"
    slow = {pid: round(t, 2) for pid, t in rebuilt.items() if t > SYNC_INTERVAL + 0.5}
    assert not slow, f"workers saw the clear later than sync_interval + 0.5 s: {slow}\n{output}"
    figures = Path("/tmp/regions-figures")
    figures.mkdir(exist_ok=True)
    with open(figures / "sync_delays.txt", "a") as f:
        delays = sorted(rebuilt.values())
        f.write(f"gunicorn x{WORKERS} `regions clear local`: delays {[round(t * 1000) for t in delays]} ms "
                "(upper bounds: the first request each worker answered after the clear)\n")
