"""The app config builds the default manager from settings and rebuilds it when they change."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
from django.core.management import call_command
from django.test import override_settings
from pymemcache.client.base import Client

import regions
from config.shop import services  # imported (and decorated) under the normal settings
from django_regions import conf

# Decorated at import time, i.e. before the test's settings exist: resolved at call time.
CALLS: list[Any] = []


@regions.region("functions")
def double(x: int) -> int:
    CALLS.append(x)
    return 2 * x


def raw_get(address: str, key: Any) -> Any:
    host, port = address.rsplit(":", 1)
    client = Client((host, int(port)), connect_timeout=2, timeout=2)
    try:
        return client.get(key)
    finally:
        client.close()


def test_ready_built_the_regions_of_the_settings(cache_regions: dict[str, Any], region_prefix: str) -> None:
    manager = regions.get_manager()
    assert list(manager) == list(cache_regions)
    assert {name: manager[name].backend for name in manager} == {
        "functions": "memcached",
        "files": "file",
        "request": "request",
    }
    assert manager.key_prefix == region_prefix


def test_module_level_decorator_uses_the_memcached_region(memcached_server: str) -> None:
    CALLS.clear()
    assert double(21) == 42
    assert double(21) == 42
    assert CALLS == [21]
    key = double.cache_key(21)
    assert raw_get(memcached_server, key) is not None, "the value is really in memcached"


def test_override_settings_rebuilds_the_default_manager(cache_regions: dict[str, Any]) -> None:
    before = regions.get_manager()
    with override_settings(CACHE_REGIONS={"functions": {"BACKEND": "memory"}}):
        inside = regions.get_manager()
        assert inside is not before
        assert list(inside) == ["functions"]
        assert inside["functions"].backend == "memory"
        CALLS.clear()
        assert double(5) == 10 and double(5) == 10
        assert CALLS == [5]
        assert inside["functions"].count() == 1
    after = regions.get_manager()
    assert list(after) == list(cache_regions)
    assert after["functions"].backend == "memcached"


def test_settings_fixture_change_rebuilds(settings: Any, tmp_path: Path) -> None:
    settings.CACHE_REGIONS = {"local": {"BACKEND": "memory", "OPTIONS": {"max_entries": 3}}}
    assert list(regions.get_manager()) == ["local"]
    settings.REGIONS_KEY_PREFIX = "other"
    assert regions.get_manager().key_prefix == "other"


def test_invalid_settings_are_logged_not_raised(settings: Any, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.ERROR, logger="django_regions"):
        settings.CACHE_REGIONS = {"functions": {"BACKEND": "nope"}}
    assert conf.manager() is None
    assert "CACHE_REGIONS is invalid" in caplog.text and "nope" in caplog.text
    # the real error, not "not configured ... add 'django_regions' to INSTALLED_APPS"
    real = "CACHE_REGIONS is invalid.*unknown BACKEND 'nope'"
    with pytest.raises(regions.ConfigurationError, match=real) as info:
        double(1)
    assert info.value.region == "functions" and info.value.option == "BACKEND"
    with pytest.raises(regions.ConfigurationError, match="unknown BACKEND 'nope'"):
        double(1)  # every call says it (a copy of the error each time)


def test_beaker_cache_opts_are_accepted_unchanged(
    settings: Any, memcached_server: str, tmp_path: Path
) -> None:
    cache_opts = {
        # Globals
        "cache.regions": "functions, files",
        "cache.lock_dir": str(tmp_path / "lock"),
        "cache.data_dir": str(tmp_path / "data"),
        # function region
        "cache.functions.type": "ext:memcached",
        "cache.functions.url": memcached_server,
        "cache.functions.expire": 60 * 60,
        # file region
        "cache.files.type": "file",
        "cache.files.expire": 5 * 24 * 60 * 60,
    }
    settings.CACHE_REGIONS = cache_opts
    manager = regions.get_manager()
    assert list(manager) == ["functions", "files"]
    assert manager["functions"].backend == "memcached" and manager["functions"].timeout == 3600
    assert manager["files"].backend == "file" and manager["files"].timeout == 5 * 24 * 3600
    call_command("check")  # raises SystemCheckError on any django_regions error

    reads_before = services.FILE_READS.get(str(services.CATALOG), 0)
    first = services.readfile(str(services.CATALOG))
    assert services.readfile(str(services.CATALOG)) == first
    assert services.FILE_READS[str(services.CATALOG)] == reads_before + 1
    assert manager["files"].count() == 1


def test_django_caches_setting_is_left_alone(settings: Any) -> None:
    original = dict(settings.CACHES)
    settings.CACHE_REGIONS = {"functions": {"BACKEND": "memory"}}
    from django.core.cache import caches

    assert original == settings.CACHES
    assert "functions" not in settings.CACHES
    # the example names RegionCache itself; the app never swaps a backend in or out
    assert type(caches["default"]).__name__ == "RegionCache"
    assert caches["default"].region_name == original["default"]["LOCATION"]


def test_decorator_imported_before_django_is_set_up(memcached_server: str, tmp_path: Path) -> None:
    """A module decorated before settings exist works once the app config has run (real process)."""
    script = textwrap.dedent(
        """
        import regions

        calls = []

        @regions.region("functions")
        def triple(x: int) -> int:
            calls.append(x)
            return 3 * x

        import django
        django.setup()
        print(triple(2), triple(2), len(calls), regions.get_manager()["functions"].backend)
        """
    )
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "config.settings",
        "REGIONS_MEMCACHED": memcached_server,
        "REGIONS_VAR_DIR": str(tmp_path),
    }
    root = Path(__file__).resolve().parents[2]
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=root, env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["6", "6", "1", "memcached"]
