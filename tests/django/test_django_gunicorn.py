"""gunicorn with several workers and ``--preload``: the workers fork from a master that already
used the memcached region. A child must never use its parent's socket: several processes reading
replies from one socket take each other's answers (errors at best, another key's value at worst).
"""

from __future__ import annotations

import json
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from config.shop.services import list_price_cents
from tests.django.helpers import example_env, start_gunicorn, stop, wait_for_http

ROOT = Path(__file__).resolve().parents[2]
WORKERS = 3
REQUESTS = 300


def test_preloaded_workers_never_share_the_masters_socket(memcached_server: str, tmp_path: Path) -> None:
    env = example_env(memcached_server, tmp_path)
    proc, base = start_gunicorn("tests.django.preload_wsgi:application", env, WORKERS, preload=True)
    try:
        wait_for_http(f"{base}/api/price/1/", proc)

        def one(i: int) -> tuple[int, str, str, dict[str, object]]:
            pk = i % 40
            with urllib.request.urlopen(f"{base}/api/price/{pk}/", timeout=30) as response:
                return (pk, response.headers["X-Worker-Pid"], response.headers["X-Master-Sockets"],
                        json.loads(response.read()))

        with ThreadPoolExecutor(8) as pool:
            answers = list(pool.map(one, range(REQUESTS), timeout=120))
    finally:
        output = stop(proc)
    master_sockets = {sockets for _, _, sockets, _ in answers}
    assert master_sockets == {"1"}, "the master did not use memcached before forking: proves nothing"
    pids = {pid for _, pid, _, _ in answers}
    assert len(pids) >= 2, f"only worker(s) {pids} answered: the test needs several\n{output}"
    wrong = [(pk, data) for pk, _, _, data in answers if data["price_cents"] != list_price_cents(pk)]
    assert wrong == []
    errors = {pid: data["cache"]["errors"] for _, pid, _, data in answers if data["cache"]["errors"]}
    assert errors == {}, f"workers hit errors on memcached (a shared socket?): {errors}\n{output}"
    hits = sum(1 for *_, data in answers if data["cache"]["hits"])
    assert hits > REQUESTS // 2
