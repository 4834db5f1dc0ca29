"""Soak through real servers: connections stay bounded however many request threads come and go.

The example project runs in ``runserver`` (WSGI: a thread per request) and uvicorn (ASGI: sync code
in a fresh thread per request) against the session memcached. Every request opens a new connection
(urllib sends ``Connection: close``), from a few client threads so several server threads overlap.

While the load runs, and once more at its end, the test counts the server process's open file
descriptors (``/proc/<pid>/fd``) and memcached's ``curr_connections``; every answer is checked
against what the cached function computes for its key, and the region's hit rate is read from the
figures the price views return (the /regions/ dashboard is HTML only).

``serve()`` writes the server's output to a file (``base.log``): runserver logs every request, and a
pipe nobody reads would fill up and block the request threads, holding their sockets open.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from config.shop.services import list_price_cents
from tests.conftest import memcached_stats_of
from tests.django.helpers import Served

ROOT = Path(__file__).resolve().parents[2]

REQUESTS = 3_000  # per server and view
PAGE_REQUESTS = 1_100  # the README's scenario: "/" through runserver
PRODUCTS = 50  # small key set: hits dominate
CLIENT_THREADS = 8
FD_LIMIT = 200  # open descriptors of the server process
CONNECTION_LIMIT = 100  # memcached curr_connections
MIN_HIT_RATE = 0.95
SAMPLE_EVERY = 0.1  # seconds
REQUEST_TIMEOUT = 30.0


def open_fds(pid: int) -> int | None:
    """Open file descriptors of ``pid`` (None once the process is gone)."""
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return None


def curr_connections(address: str) -> int | None:
    """memcached's ``curr_connections`` (None when it refuses or does not answer the stats client)."""
    try:
        return int(memcached_stats_of(address)["curr_connections"])  # type: ignore[call-overload]
    except Exception:
        return None


def start(serve: Callable[[str], Any], kind: str) -> Served:
    """``serve(kind)``: the base URL, with the server's pid and its output log."""
    base = serve(kind)
    assert isinstance(base, Served)
    return base


@dataclass
class Sampler:
    """Samples the server's descriptors and memcached's connections every SAMPLE_EVERY seconds."""

    pid: int
    memcached: str
    fds: list[int | None] = field(default_factory=list)
    connections: list[int | None] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def sample(self) -> None:
        self.fds.append(open_fds(self.pid))
        self.connections.append(curr_connections(self.memcached))

    def _run(self) -> None:
        while not self._stop.wait(SAMPLE_EVERY):
            self.sample()

    def __enter__(self) -> Sampler:
        self.sample()
        self._thread = threading.Thread(target=self._run, name="soak-sampler", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        self.sample()  # at the end

    def fd_problems(self) -> list[str]:
        out = []
        if None in self.fds:
            out.append("the server process went away during the soak")
        if self.fd_peak >= FD_LIMIT:
            out.append(f"server fds reached {self.fd_peak} (limit {FD_LIMIT}), {self.fds[-1]} at the end")
        return out

    def connection_problems(self) -> list[str]:
        out = []
        if None in self.connections:
            out.append(
                f"memcached refused/ignored the stats client in {self.connections.count(None)} samples"
            )
        if self.connection_peak >= CONNECTION_LIMIT:
            out.append(
                f"memcached curr_connections reached {self.connection_peak} (limit {CONNECTION_LIMIT}),"
                f" {self.connections[-1]} at the end"
            )
        return out

    @property
    def fd_peak(self) -> int:
        return max((n for n in self.fds if n is not None), default=-1)

    @property
    def connection_peak(self) -> int:
        return max((n for n in self.connections if n is not None), default=-1)

    def summary(self) -> str:
        return (
            f"fds start/peak/end {self.fds[0]}/{self.fd_peak}/{self.fds[-1]}, "
            f"curr_connections start/peak/end {self.connections[0]}/{self.connection_peak}/"
            f"{self.connections[-1]} ({len(self.fds)} samples)"
        )


def get(url: str) -> tuple[int, bytes]:
    """GET on a new connection: (status, body); status 0 when no HTTP answer came."""
    try:
        with urllib.request.urlopen(url, timeout=REQUEST_TIMEOUT) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()
    except OSError as error:
        return 0, repr(error).encode()


Check = Callable[[int, bytes], str]  # (status, body) -> "ok" or what was wrong


def load(requests: list[tuple[str, Check]]) -> Counter[str]:
    """GET every URL (a new connection each) from CLIENT_THREADS threads; count the checks' verdicts."""

    def one(request: tuple[str, Check]) -> str:
        url, check = request
        return check(*get(url))

    with ThreadPoolExecutor(max_workers=CLIENT_THREADS) as pool:
        return Counter(pool.map(one, requests, timeout=600))


def page_check(status: int, body: bytes) -> str:
    return "ok" if status == 200 else f"status {status}"


def price_check(pk: int) -> Check:
    """The answer must be 200 and carry the price the function computes for ``pk``."""

    def check(status: int, body: bytes) -> str:
        if status != 200:
            return f"status {status}"
        data = json.loads(body)
        if data.get("pk") != pk or data.get("price_cents") != list_price_cents(pk):
            return "wrong value"
        return "ok"

    return check


@pytest.mark.parametrize("view", ["price", "aprice"])
@pytest.mark.parametrize("kind", ["wsgi", "asgi"])
def test_soak_connections_stay_bounded(
    serve: Callable[[str], str], memcached_server: str, kind: str, view: str
) -> None:
    """3,000 requests, each on a new connection, to a view calling a memcached-region function."""
    base = start(serve, kind)
    first_pk = {"wsgi": 1_000, "asgi": 2_000}[kind]  # each server starts with its own cold keys
    pks = [first_pk + (i * 7) % PRODUCTS for i in range(REQUESTS)]

    started = time.monotonic()
    with Sampler(base.pid, memcached_server) as sampler:
        verdicts = load([(f"{base}/api/{view}/{pk}/", price_check(pk)) for pk in pks])
    duration = time.monotonic() - started

    status, body = get(f"{base}/api/{view}/{first_pk}/")
    cache: dict[str, Any] = json.loads(body)["cache"] if status == 200 else {}
    hits, misses = cache.get("hits") or 0, cache.get("misses") or 0
    hit_rate = hits / (hits + misses) if hits + misses else 0.0
    wrong = REQUESTS - verdicts["ok"]
    summary = (
        f"{kind} /api/{view}/: {REQUESTS} requests in {duration:.1f} s; verdicts {dict(verdicts)}; "
        f"{sampler.summary()}; region {cache or f'unreadable (status {status})'}; hit rate {hit_rate:.3f}"
    )
    print(summary)

    problems = sampler.fd_problems() + sampler.connection_problems()
    if wrong:
        problems.append(f"{wrong} wrong responses")
    if cache.get("backend") != "memcached":
        problems.append(f"the functions region is not on memcached: {cache.get('backend')}")
    if hit_rate <= MIN_HIT_RATE:
        problems.append(f"hit rate {hit_rate:.3f} (must be above {MIN_HIT_RATE})")
    tail = base.output_tail()
    assert not problems, "; ".join(problems) + "\n" + summary + "\nserver output, last lines:\n" + tail


def test_readme_scenario_page_on_new_connections(
    serve: Callable[[str], str], memcached_server: str, tmp_path: Path
) -> None:
    """The README's example: 1,100 requests to ``/`` through runserver, each on a new connection."""
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "config.settings",
        "REGIONS_MEMCACHED": memcached_server,
        "REGIONS_VAR_DIR": str(tmp_path / "var"),  # the folder serve() gives the server
        "DJANGO_DEBUG": "0",
    }
    subprocess.run(
        [sys.executable, "manage.py", "migrate", "--noinput", "-v", "0"],
        cwd=ROOT,
        env=env,
        check=True,
        timeout=120,
    )
    base = start(serve, "wsgi")
    assert get(f"{base}/")[0] == 200  # the demo user is created by the first request, before the load

    started = time.monotonic()
    with Sampler(base.pid, memcached_server) as sampler:
        verdicts = load([(f"{base}/", page_check)] * PAGE_REQUESTS)
    duration = time.monotonic() - started
    summary = f"wsgi /: {PAGE_REQUESTS} requests in {duration:.1f} s; verdicts {dict(verdicts)}; "
    summary += sampler.summary()
    print(summary)

    problems = sampler.fd_problems()
    if verdicts["ok"] != PAGE_REQUESTS:
        problems.append(f"{PAGE_REQUESTS - verdicts['ok']} answers were not 200")
    tail = base.output_tail()
    assert not problems, "; ".join(problems) + "\n" + summary + "\nserver output, last lines:\n" + tail
