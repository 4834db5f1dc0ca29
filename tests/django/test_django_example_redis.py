"""The example project's Redis region ("rates"): present when the settings are given a Redis
(``REGIONS_REDIS``, which scripts/serve sets when it can start redis-server), absent otherwise, and
shown like the others by ``manage.py regions``, the dashboard, ``/metrics`` and the toolbar panel.

A real redis-server (the session's), real processes for the settings read from the environment.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from django.http import HttpRequest, HttpResponse
from django.test import Client

import regions
from config.shop import services
from tests.django.test_metrics import scrape
from tests.django.test_panel import run_toolbar

pytestmark = pytest.mark.django_db
redis = pytest.importorskip("redis")
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def with_rates(settings: Any, regions_config: dict[str, Any], redis_server: str) -> str:
    """The example's "rates" region on the session redis-server, as the settings make it."""
    settings.CACHE_REGIONS = {
        **regions_config,
        "rates": {"BACKEND": "redis", "LOCATION": redis_server, "TIMEOUT": 60,
                  "OPTIONS": {"socket_timeout": 0.5, "connect_timeout": 0.5}},
    }
    return redis_server


def manage_regions(tmp_path: Path, memcached: str, **env: str) -> dict[str, list[str]]:
    """``manage.py regions`` in a real process with the example's settings: table rows by name."""
    environ = {key: value for key, value in os.environ.items() if key != "REGIONS_REDIS"}
    environ.update(DJANGO_SETTINGS_MODULE="config.settings", REGIONS_MEMCACHED=memcached,
                   REGIONS_VAR_DIR=str(tmp_path), **env)
    done = subprocess.run([sys.executable, "manage.py", "regions"], cwd=ROOT, env=environ,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    return {line.split()[0]: line.split() for line in lines[2:] if line.strip() and not line.startswith("(")}


def test_the_settings_put_the_rates_region_on_redis_only_when_given_a_redis(
    memcached_server: str, redis_server: str, tmp_path: Path
) -> None:
    table = manage_regions(tmp_path, memcached_server, REGIONS_REDIS=redis_server)
    assert table["rates"][1:3] == ["redis", redis_server]
    assert table["rates"][3:5] == ["1", "min"] and table["rates"][-2] == "yes"
    # without one, the region is in each process's memory (a decorated function's region must exist:
    # manage.py check's E021 would stop the example otherwise; this command runs those checks)
    assert manage_regions(tmp_path, memcached_server)["rates"][1] == "memory"
    assert manage_regions(tmp_path, memcached_server, REGIONS_REDIS="")["rates"][1] == "memory"


def test_without_redis_the_rate_view_says_how_to_get_one(
    settings: Any, regions_config: dict[str, Any]
) -> None:
    settings.CACHE_REGIONS = {**regions_config, "rates": {"BACKEND": "memory", "TIMEOUT": 60}}
    response = Client().get("/api/rate/eur/")
    assert response.status_code == 200 and response.json()["per_usd"] == 0.92
    assert "REGIONS_REDIS" in response.json()["note"]


def test_the_rate_view_caches_in_redis(with_rates: str) -> None:
    client = Client()
    first = client.get("/api/rate/eur/").json()
    second = client.get("/api/rate/EUR/").json()
    assert first["per_usd"] == second["per_usd"] == 0.92
    assert second["computed_at"] == first["computed_at"], "the second answer was computed again"
    assert (second["region"]["hits"], second["region"]["misses"]) == (1, 1)
    raw = redis.Redis.from_url(with_rates)
    assert raw.exists(services.exchange_rate.cache_key("EUR")) == 1, "the entry is not in Redis"
    assert client.get("/api/rate/xyz/").status_code == 404


def test_the_dashboard_shows_the_redis_region(with_rates: str, settings: Any) -> None:
    settings.REGIONS_DASHBOARD_PUBLIC = True
    services.exchange_rate("GBP"), services.exchange_rate("GBP")
    html = Client().get("/regions/").content.decode()
    card = re.search(r'id="region-rates".*?</article>', html, re.S)
    assert card, "no card for the Redis region"
    assert with_rates in card.group(0) and "redis" in card.group(0)
    assert "healthy</span>" in card.group(0)
    assert re.search(r"<strong>50\.0%</strong>", card.group(0)), "one hit of two calls"


def test_metrics_count_the_redis_region(with_rates: str) -> None:
    before = scrape()
    services.exchange_rate("JPY"), services.exchange_rate("JPY"), services.exchange_rate("JPY")
    after = scrape()
    keys = {name: (f"regions_{name}_total", "rates", "redis") for name in ("hits", "misses")}
    added = {name: after[key] - before.get(key, 0.0) for name, key in keys.items()}
    assert added == {"hits": 2, "misses": 1}


def test_the_toolbar_panel_lists_redis_calls(with_rates: str, settings: Any) -> None:
    settings.INSTALLED_APPS = [*settings.INSTALLED_APPS, "debug_toolbar"]
    settings.ROOT_URLCONF = "tests.django.toolbar_urls"
    settings.DEBUG_TOOLBAR_PANELS = ["django_regions.panels.RegionsPanel"]
    regions.get_manager()["rates"].clear()

    def view(request: HttpRequest) -> HttpResponse:
        services.exchange_rate("CHF"), services.exchange_rate("CHF")
        return HttpResponse("<html><body>rates</body></html>")

    with regions.request_scope():
        panel = run_toolbar(view)
    stats = panel.get_stats()
    calls = [(c["region"], c["function"].rsplit(".", 1)[-1], c["outcome"]) for c in stats["calls"]]
    assert calls == [("rates", "exchange_rate", "miss"), ("rates", "exchange_rate", "hit")]
    assert "services.exchange_rate" in panel.content
