"""Fixtures for the Django layer: real memcached (tests/conftest.py), real folders, real servers.

Settings module: ``tests.django.settings`` unless DJANGO_SETTINGS_MODULE/--ds says otherwise.
When this file is not an initial conftest (``pytest`` run from the root), pytest-django has
not set Django up yet, so it is done here.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
import weakref
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.django.settings")

import django  # noqa: E402
from django.apps import apps  # noqa: E402
from django.conf import settings as django_settings  # noqa: E402

django_settings.INSTALLED_APPS  # noqa: B018 - load the settings module now (pytest-django checks this)
if not apps.ready:
    django.setup()

import regions  # noqa: E402
from tests.django.helpers import Served, example_env, free_port, stop, wait_for_http  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def region_prefix() -> str:
    """A key prefix unique to the test, so tests sharing the session memcached never collide."""
    return "dj" + uuid.uuid4().hex[:10]


@pytest.fixture
def regions_config(memcached_server: str, tmp_path: Path) -> dict[str, dict[str, Any]]:
    """The example's three regions, on the session memcached and a fresh folder."""
    return {
        "functions": {"BACKEND": "memcached", "LOCATION": memcached_server, "TIMEOUT": 3600},
        "files": {"BACKEND": "file", "LOCATION": str(tmp_path / "files"), "TIMEOUT": 5 * 24 * 3600},
        "request": {"BACKEND": "request"},
    }


@pytest.fixture(autouse=True)
def cache_regions(settings: Any, regions_config: dict[str, Any], region_prefix: str) -> dict[str, Any]:
    """Every test starts with the real regions (the settings change itself rebuilds the manager)."""
    settings.REGIONS_KEY_PREFIX = region_prefix
    settings.CACHE_REGIONS = regions_config
    settings.REGIONS_NOTICES = []
    return regions_config


@pytest.fixture(autouse=True)
def decorated_in_this_test(monkeypatch: pytest.MonkeyPatch) -> None:
    """E021 sees only the functions decorated during the test: the tests replace CACHE_REGIONS with
    a few regions, which the example's functions (imported for the whole session) would not find."""
    monkeypatch.setattr(regions.manager._default, "decorated", weakref.WeakValueDictionary())


@pytest.fixture(autouse=True)
def no_scope_left_open() -> Iterator[None]:
    """A request scope must never outlive the request that opened it."""
    assert not regions.in_request_scope(), "a request scope was open before the test"
    yield
    leaked = regions.in_request_scope()
    if leaked:
        regions.scope.CURRENT.set(None)  # don't poison the following tests
    assert not leaked, "the test left a request scope open"


@pytest.fixture
def serve(memcached_server: str, tmp_path: Path) -> Iterator[Callable[[str], str]]:
    """``serve("wsgi")`` / ``serve("asgi")``: run the example project in a real server, return its URL.

    WSGI is ``manage.py runserver --noreload``; ASGI is ``uvicorn config.asgi:application``. Both use
    config.settings with REGIONS_MEMCACHED pointing at the session memcached.
    """
    procs: list[subprocess.Popen[bytes]] = []
    logs = tmp_path / "server-logs"
    logs.mkdir()
    env = example_env(memcached_server, tmp_path, PYTHONUNBUFFERED="1")

    def start(kind: str) -> str:
        port = free_port()
        if kind == "wsgi":
            cmd = [sys.executable, "manage.py", "runserver", f"127.0.0.1:{port}", "--noreload"]
        elif kind == "asgi":
            cmd = [
                sys.executable,
                "-m",
                "uvicorn",
                "config.asgi:application",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--lifespan",
                "off",
                "--log-level",
                "warning",
            ]
        else:
            raise ValueError(kind)
        # Output goes to a file: a pipe read only at the end fills up (runserver logs each request)
        # and then blocks every request thread in its log call, holding its socket open.
        log = logs / f"{kind}-{port}.log"
        with open(log, "wb") as out:
            proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
        procs.append(proc)
        base = Served(f"http://127.0.0.1:{port}", proc.pid, log)
        wait_for_http(f"{base}/echo/?token=ready&n=1", proc, log)
        return base

    yield start
    for proc in procs:
        stop(proc)

