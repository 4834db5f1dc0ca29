"""System checks: every id can be triggered, has a hint, and E-codes map 1:1 to regions' problems."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
from django.core import checks
from django.core.management import call_command
from django.core.management.base import SystemCheckError

from config.shop import services  # noqa: F401 - decorate the example's functions under normal settings
from regions.config import check as regions_check
from tests.django.helpers import example_env, free_port

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def plain_caches(request: pytest.FixtureRequest, settings: Any) -> None:
    """These tests replace the example's regions, which its CACHES name: Django's own cache here,
    except for the example's settings themselves (E020 is tested in test_django_cache.py)."""
    if request.node.name != "test_the_example_settings_pass":
        settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}


def ours() -> list[checks.CheckMessage]:
    return [m for m in checks.run_checks() if str(m.id).startswith("django_regions.")]


def test_the_example_settings_pass(cache_regions: dict[str, Any]) -> None:
    assert ours() == []
    call_command("check")


BAD: dict[str, dict[str, Any]] = {
    "E001 unknown setting name": {"a": {"BACKEND": "memory", "LOCATOIN": "x"}},
    "E001 settings not a dict": {"a": "memory"},
    "E002 unknown BACKEND": {"a": {"BACKEND": "couchbase"}},
    "E003 missing LOCATION": {"a": {"BACKEND": "memcached"}},
    "E003 malformed LOCATION": {"a": {"BACKEND": "memcached", "LOCATION": "localhost"}},
    "E004 negative TIMEOUT": {"a": {"BACKEND": "memory", "TIMEOUT": -1}},
    "E004 non-numeric TIMEOUT": {"a": {"BACKEND": "memory", "TIMEOUT": "ten"}},
    "E005 unknown option": {"a": {"BACKEND": "memory", "OPTIONS": {"max_entrys": 10}}},
    "E006 bad KEY_PREFIX": {"a": {"BACKEND": "memory", "KEY_PREFIX": 5}},
    "E006 bad VERSION": {"a": {"BACKEND": "memory", "VERSION": "2"}},
}


@pytest.mark.parametrize("case", list(BAD))
def test_each_error_id(case: str, settings: Any) -> None:
    expected = "django_regions." + case.split()[0]
    settings.CACHE_REGIONS = BAD[case]
    messages = ours()
    assert [m.id for m in messages] == [expected]
    [message] = messages
    assert message.level == checks.ERROR
    assert message.hint, "every message says what to do"
    assert "'a'" in message.msg or message.obj == "CACHE_REGIONS['a']"
    with pytest.raises(SystemCheckError, match=expected.replace(".", r"\.")):
        call_command("check")


def test_w010_a_memcached_timeout_past_2038_warns_and_the_regions_work(
    settings: Any, memcached_server: str
) -> None:
    """A TIMEOUT memcached cannot keep for all of it (its expiry is a 32-bit Unix time): usable,
    capped at 2038-01-19, so a warning, not an error; the regions are built all the same."""
    import regions

    thirteen_years = 13 * 365 * 24 * 3600
    settings.CACHE_REGIONS = {
        "functions": {"BACKEND": "memcached", "LOCATION": memcached_server, "TIMEOUT": thirteen_years}
    }
    [message] = ours()
    assert message.id == "django_regions.W010"
    assert message.level == checks.WARNING
    assert message.obj == "CACHE_REGIONS['functions']"
    assert f"TIMEOUT={thirteen_years}" in message.msg and "2038-01-19" in message.msg
    assert message.hint and "None" in message.hint
    call_command("check")  # a warning does not fail the check command
    functions = regions.get_manager()["functions"]
    functions.set("k", "v")
    assert functions.get("k") == "v"


def test_e007_file_location_not_creatable(settings: Any, tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    settings.CACHE_REGIONS = {"files": {"BACKEND": "file", "LOCATION": str(blocker / "cache")}}
    [message] = ours()
    assert message.id == "django_regions.E007"
    assert str(blocker) in message.msg and message.hint


def test_e007_a_location_root_cannot_create_is_reported_as_root(settings: Any) -> None:
    """``os.access`` on /proc is true for root; creating the folder for real is not."""
    settings.CACHE_REGIONS = {"files": {"BACKEND": "file", "LOCATION": "/proc/forbidden/here"}}
    [message] = ours()
    assert message.id == "django_regions.E007"
    assert "/proc/forbidden" in message.msg and message.hint
    with pytest.raises(SystemCheckError, match="E007"):
        call_command("check")


def w003(settings: Any, folder: Path) -> checks.CheckMessage:
    settings.CACHE_REGIONS = {"files": {"BACKEND": "file", "LOCATION": str(folder)}}
    [message] = ours()
    assert message.id == "django_regions.W003"
    assert message.level == checks.WARNING
    assert message.obj == "CACHE_REGIONS['files']" and str(folder) in message.msg
    call_command("check")  # a warning does not fail the check command
    return message


def test_w003_a_folder_everyone_can_write(settings: Any, tmp_path: Path) -> None:
    folder = tmp_path / "shared"
    folder.mkdir()
    folder.chmod(0o777)
    message = w003(settings, folder)
    assert "writable by group and others (mode 777)" in message.msg
    assert message.hint and f"chmod 700 {folder}" in message.hint and "chown" not in message.hint
    folder.chmod(0o775)
    assert "writable by group (mode 775)" in w003(settings, folder).msg
    folder.chmod(0o700)
    assert ours() == []


@pytest.mark.skipif(os.geteuid() != 0, reason="giving a folder to another user needs root")
def test_w003_a_folder_owned_by_another_user(settings: Any, tmp_path: Path) -> None:
    folder = tmp_path / "theirs"
    folder.mkdir(mode=0o700)
    os.chown(folder, 65534, 65534)
    message = w003(settings, folder)
    assert "owned by" in message.msg and "uid 65534" in message.msg and "writable" not in message.msg
    assert message.hint and f"chown root {folder} && chmod 700 {folder}" in message.hint


def test_error_ids_map_one_to_one(settings: Any, tmp_path: Path) -> None:
    config = {
        "a": {"BACKEND": "memory", "TIMEOUT": -5, "OPTIONS": {"nope": 1}, "KEY_PREFIX": 3},
        "b": {"BACKEND": "memcached"},
        "c": {"BACKEND": "what"},
    }
    settings.CACHE_REGIONS = config
    problems = regions_check(config)
    messages = ours()
    assert len(problems) >= 4
    assert [m.id for m in messages] == [f"django_regions.{p.id}" for p in problems]
    assert [m.hint for m in messages] == [p.hint for p in problems]


def test_w001_request_region_without_middleware(settings: Any) -> None:
    settings.MIDDLEWARE = [m for m in settings.MIDDLEWARE if "RequestRegionMiddleware" not in m]
    [message] = ours()
    assert message.id == "django_regions.W001"
    assert message.level == checks.WARNING
    assert "django_regions.middleware.RequestRegionMiddleware" in message.hint
    call_command("check")  # a warning does not fail the check command


def test_w001_not_raised_for_a_subclass_of_the_middleware(settings: Any) -> None:
    settings.MIDDLEWARE = [
        "tests.django.helpers.MyMiddleware" if "RequestRegionMiddleware" in m else m
        for m in settings.MIDDLEWARE
    ]
    assert ours() == []


def test_w002_memcached_not_answering_names_the_address(settings: Any, memcached_server: str) -> None:
    dead = f"127.0.0.1:{free_port()}"
    settings.CACHE_REGIONS = {
        "up": {"BACKEND": "memcached", "LOCATION": memcached_server},
        "down": {"BACKEND": "memcached", "LOCATION": [memcached_server, dead]},
    }
    [message] = ours()
    assert message.id == "django_regions.W002"
    assert message.level == checks.WARNING
    assert dead in message.msg and "'down'" in message.msg
    assert memcached_server not in message.msg
    assert dead in message.hint


def test_e021_a_misspelled_region_name(settings: Any) -> None:
    """``@region("functoins")`` was silent until its first call raised UnknownRegion (a 500)."""
    import gc

    import regions

    @regions.region("functoins")
    def misspelled(x: int) -> int:
        return x

    @regions.region("functions")
    def spelled_right(x: int) -> int:
        return x

    [message] = ours()
    assert message.id == "django_regions.E021" and message.level == checks.ERROR
    assert message.obj == f"{__name__}.{misspelled.__qualname__}"
    assert message.obj in message.msg and "'functoins'" in message.msg
    assert message.hint == "Did you mean 'functions'? Configured regions: 'files', 'functions', 'request'."
    with pytest.raises(SystemCheckError, match=r"E021"):
        call_command("check")
    with pytest.raises(regions.UnknownRegion):
        misspelled(1)  # what the check saves: this call in a view
    settings.CACHE_REGIONS = {**settings.CACHE_REGIONS, "functoins": {"BACKEND": "memory"}}
    assert ours() == []  # the region exists now
    settings.CACHE_REGIONS = {"functions": {"BACKEND": "memory"}, "other": {"BACKEND": "memory"}}
    [message] = ours()
    assert message.hint == "Did you mean 'functions'? Configured regions: 'functions', 'other'."
    settings.CACHE_REGIONS = {"zzz": {"BACKEND": "memory"}}
    assert {m.hint for m in ours()} == {"Configured regions: 'zzz'."}  # nothing close: no guess
    del misspelled, spelled_right
    gc.collect()
    assert ours() == []  # a function that is gone is not reported


def run_check(script: str, tmp_path: Path, memcached_server: str) -> subprocess.CompletedProcess[str]:
    env = example_env(memcached_server, tmp_path)
    return subprocess.run([sys.executable, "-c", textwrap.dedent(script)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)


def test_e021_in_a_real_process_before_and_after_the_settings_load(
    tmp_path: Path, memcached_server: str
) -> None:
    """The example's own functions pass; a function decorated before django.setup() (an import
    that comes first) is reported by check; one decorated after it is also logged at once."""
    done = run_check(
        """
        import regions

        @regions.region("functoins")
        def early(): ...

        import django
        django.setup()

        @regions.region("filez")
        def late(): ...

        from django.core.management import call_command
        call_command("check")
        """,
        tmp_path, memcached_server,
    )
    assert done.returncode != 0
    early = "__main__.early: (django_regions.E021) __main__.early is cached in region 'functoins'"
    assert early in done.stderr
    assert "HINT: Did you mean 'functions'? Configured regions: 'files', 'functions', 'hot', 'local', " \
        "'rates', 'request'." in done.stderr
    assert "__main__.late: (django_regions.E021)" in done.stderr and "Did you mean 'files'?" in done.stderr
    assert "__main__.late: unknown cache region 'filez'" in done.stderr  # logged when decorated
    example = run_check(
        """
        import django
        django.setup()
        from django.core.management import call_command
        from regions.manager import decorated
        call_command("check")
        print(sorted(set(decorated().values())))
        """,
        tmp_path, memcached_server,
    )
    assert example.returncode == 0, example.stderr
    assert "System check identified no issues" in example.stdout
    # the URLconf was imported by the check: the views' functions were all there to be checked
    assert "['files', 'functions', 'hot', 'local', 'rates', 'request']" in example.stdout


@pytest.mark.parametrize("links", [[("Shop", "no-such-url-name")], ["/"], [("Shop", "/", "x")]])
def test_e022_dashboard_links_that_cannot_be_drawn(settings: Any, links: Any) -> None:
    settings.REGIONS_DASHBOARD_LINKS = links
    [message] = ours()
    assert message.id == "django_regions.E022" and message.obj == "REGIONS_DASHBOARD_LINKS"
    assert "REGIONS_DASHBOARD_LINKS must be a list of (label, url) pairs" in message.msg and message.hint
    settings.REGIONS_DASHBOARD_LINKS = [("Shop", "shop:index"), ("Docs", "/docs/")]
    assert ours() == []
