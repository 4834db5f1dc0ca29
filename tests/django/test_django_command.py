"""``manage.py regions``: list, stats, clear NAME, cull [NAME]."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from io import StringIO
from typing import Any

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

import regions
from django_regions import conf
from tests.django.helpers import free_port

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def run(*args: str) -> str:
    out = StringIO()
    call_command("regions", *args, stdout=out)
    return out.getvalue()


def rows(output: str) -> dict[str, list[str]]:
    """Table rows by region name (first column)."""
    lines = output.splitlines()
    return {line.split()[0]: line.split() for line in lines[2:] if line.strip() and not line.startswith("(")}


def test_list_shows_backend_location_timeout_reachable_entries(
    cache_regions: dict[str, Any], memcached_server: str
) -> None:
    regions.get_manager()["files"].set("k", "v")
    output = run()
    assert output.splitlines()[0].split() == [
        "REGION",
        "BACKEND",
        "LOCATION",
        "TIMEOUT",
        "REACHABLE",
        "ENTRIES",
    ]
    table = rows(output)
    assert table["functions"] == ["functions", "memcached", memcached_server, "1", "h", "yes", "-"]
    assert table["files"][1:3] == ["file", cache_regions["files"]["LOCATION"]]
    assert table["files"][-2:] == ["yes", "1"]
    assert table["request"][1] == "request"
    assert run("list") == output


def test_list_reports_an_unreachable_memcached(settings: Any) -> None:
    settings.CACHE_REGIONS = {"gone": {"BACKEND": "memcached", "LOCATION": f"127.0.0.1:{free_port()}"}}
    assert rows(run())["gone"][-2:] == ["NO", "-"]


def test_stats_shows_hits_misses_hit_rate_errors_latency(settings: Any) -> None:
    manager = regions.get_manager()
    functions = manager["functions"]
    functions.set("a", 1)
    for _ in range(3):
        functions.get("a")
    functions.get("missing")
    output = run("stats")
    assert output.splitlines()[0].split() == [
        "REGION",
        "HITS",
        "MISSES",
        "HIT",
        "RATE",
        "ERRORS",
        "MEAN",
        "LATENCY",
        "PROCESSES",
        "SCOPE",
    ]
    name, hits, misses, rate, errors, latency, unit, processes, scope = rows(output)["functions"]
    assert (hits, misses, rate, errors, unit) == ("3", "1", "75.0%", "0", "ms")
    assert (processes, scope) == ("1", "deployment")  # this process alone made calls
    assert rows(output)["request"][-2:] == ["1", "per-process"]
    assert float(latency) > 0
    assert rows(output)["files"][1:5] == ["0", "0", "-", "0"]


def test_stats_counts_errors(settings: Any) -> None:
    settings.CACHE_REGIONS = {
        "gone": {
            "BACKEND": "memcached",
            "LOCATION": f"127.0.0.1:{free_port()}",
            "OPTIONS": {"connect_timeout": 0.2},
        }
    }
    regions.get_manager()["gone"].get("x")
    assert rows(run("stats"))["gone"][4] == "1"


def test_clear_name_clears_only_that_region(settings: Any, memcached_server: str, region_prefix: str) -> None:
    config = {
        "functions": {"BACKEND": "memcached", "LOCATION": memcached_server},
        "sessions": {"BACKEND": "memcached", "LOCATION": memcached_server},
    }
    settings.CACHE_REGIONS = config
    manager = regions.get_manager()
    for name in config:
        for i in range(5):
            manager[name].set(("k", i), f"{name}-{i}")
    output = run("clear", "functions")
    assert "cleared region 'functions'" in output

    # A separate manager (as another process would have) sees the same server state.
    secret, _ = conf.signing_secrets()  # another process of the project signs as this one does
    other = regions.CacheManager(config, key_prefix=region_prefix, secret=secret)
    try:
        assert [other["functions"].get(("k", i)) for i in range(5)] == [None] * 5
        assert [other["sessions"].get(("k", i)) for i in range(5)] == [f"sessions-{i}" for i in range(5)]
    finally:
        other.close()
    assert manager["sessions"].get(("k", 0)) == "sessions-0"
    assert manager["functions"].get(("k", 0)) is None


def test_clear_file_region(cache_regions: dict[str, Any]) -> None:
    files = regions.get_manager()["files"]
    files.set("a", 1)
    files.set("b", 2)
    assert files.count() == 2
    run("clear", "files")
    assert files.count() == 0 and files.get("a") is None


def test_cull_removes_expired_files_of_every_file_region(cache_regions: dict[str, Any]) -> None:
    files = regions.get_manager()["files"]
    files.set("live", "v")
    ns = files.store.namespace("an old function")
    for i in range(3):
        ns.set_entry(f"k{i}", (time.time() - 3600, 60, i))  # expired an hour ago
    assert files.count() == 1

    output = run("cull")
    assert output.splitlines() == ["culled region 'files': removed 3 file(s)"]
    assert files.count() == 1 and files.get("live") == "v"
    assert run("cull") == "culled region 'files': removed 0 file(s)\n"


def test_cull_named_regions(cache_regions: dict[str, Any]) -> None:
    output = run("cull", "files", "functions")
    assert output.splitlines() == [
        "culled region 'files': removed 0 file(s)",
        "region 'functions' (memcached): nothing to cull, it expires entries itself",
    ]


def test_cull_unknown_name_lists_the_configured_ones() -> None:
    with pytest.raises(CommandError, match="unknown region.*nope.*functions, files, request"):
        run("cull", "nope")


def test_cull_without_file_regions(settings: Any, memcached_server: str) -> None:
    settings.CACHE_REGIONS = {"functions": {"BACKEND": "memcached", "LOCATION": memcached_server}}
    assert run("cull") == "no file regions to cull\n"


def test_clear_unknown_name_lists_the_configured_ones() -> None:
    with pytest.raises(CommandError) as info:
        run("clear", "nope")
    assert "nope" in str(info.value)
    assert "functions, files, request" in str(info.value)


def test_clear_without_name_is_an_error() -> None:
    with pytest.raises(CommandError, match="name the region"):
        run("clear")


def test_names_are_only_for_clear() -> None:
    with pytest.raises(CommandError, match="takes no region names"):
        run("stats", "functions")


def test_invalid_settings_make_the_command_point_at_check(settings: Any) -> None:
    settings.CACHE_REGIONS = {"x": {"BACKEND": "bogus"}}
    with pytest.raises(CommandError, match="manage.py check"):
        run()


def test_manage_py_regions_in_a_real_process(memcached_server: str, tmp_path: Any) -> None:
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "config.settings",
        "REGIONS_MEMCACHED": memcached_server,
        "REGIONS_VAR_DIR": str(tmp_path),
    }
    done = subprocess.run(
        [sys.executable, "manage.py", "regions"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    table = rows(done.stdout)
    assert table["functions"][1:3] == ["memcached", memcached_server]
    assert table["functions"][-2] == "yes"
    assert "notice" not in done.stdout


def test_manage_py_regions_with_memcached_down_falls_back(tmp_path: Any) -> None:
    dead = f"127.0.0.1:{free_port()}"
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "config.settings",
        "REGIONS_MEMCACHED": dead,
        "REGIONS_VAR_DIR": str(tmp_path),
    }
    done = subprocess.run(
        [sys.executable, "manage.py", "regions"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert rows(done.stdout)["functions"][1:3] == ["memory", "in-process"]
    assert f"memcached at {dead} is not answering" in done.stdout
    assert f"memcached at {dead} is not answering" in done.stderr, "logged as a warning too"


def test_clear_that_cannot_reach_memcached_fails_loudly(settings: Any) -> None:
    """The command's process ends at once: a clear it could not make must not look made."""
    dead = f"127.0.0.1:{free_port()}"
    settings.CACHE_REGIONS = {
        "functions": {"BACKEND": "memcached", "LOCATION": dead, "OPTIONS": {"connect_timeout": 0.3}}
    }
    with pytest.raises(CommandError, match="could not clear 'functions'") as info:
        run("clear", "functions")
    assert "run the command again" in str(info.value)


@pytest.mark.parametrize("shared", ["memcached", "file"])
def test_clear_over_counters_that_hold_no_number_succeeds(
    shared: str, memcached_factory: Any, tmp_path: Any
) -> None:
    """``manage.py regions clear`` of the example's synced region ``local`` (and of the region it
    syncs through) in a real process, after something else wrote no number in their counters (a
    raw client on the real server, raw bytes in the folder's ``seq``): before, the clear failed and
    the command exited 1 with "the backend did not answer"."""
    from pymemcache.client.base import Client

    from regions.backends.file.sync_log import FileLog
    from regions.backends.memcached.keys import safe_namespace
    from regions.region import identity

    garbage = b"\x00\xffnot a number\r\n" + b"#" * 300
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "config.settings", "REGIONS_VAR_DIR": str(tmp_path)}
    env.pop("REGIONS_MEMCACHED", None)
    local = identity("example", "local")  # the example's REGIONS_KEY_PREFIX
    if shared == "memcached":
        server = memcached_factory()
        env["REGIONS_MEMCACHED"] = server.address
        names = ["local", "functions"]
        client = Client(("127.0.0.1", server.port))
        damaged = [safe_namespace(local, 200) + ":__sync__",
                   safe_namespace(identity("example", "functions"), 150) + ":__generation__"]
        for key in damaged:
            assert client.set(key, garbage, noreply=False)
    else:  # no memcached: ``local`` syncs through the file region ``files``
        names = ["local", "files"]
        seq = FileLog(tmp_path / "cache" / "files", local).seq_path
        os.makedirs(os.path.dirname(seq))
        with open(seq, "wb") as f:
            f.write(garbage)
        damaged = [seq]
    done = subprocess.run(
        [sys.executable, "manage.py", "regions", "clear", *names],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert [f"cleared region {name!r}" for name in names] == done.stdout.splitlines()
    assert "did not answer" not in done.stderr
    for key in damaged:
        [line] = [line for line in done.stderr.splitlines() if key in line]
        assert "not a number" in line and "\\x00\\xffnot a number\\r\\n" in line and "#" * 60 not in line
    if shared == "memcached":
        assert all(client.get(key).isdigit() for key in damaged)
        client.close()
    else:
        with open(damaged[0], "rb") as f:
            assert f.read().isdigit()


def test_clear_says_what_is_true_of_regions_in_other_processes_only(
    settings: Any, cache_regions: dict[str, Any]
) -> None:
    """``regions clear request`` said "cleared" from a shell, where there is nothing to clear."""
    settings.CACHE_REGIONS = {**cache_regions, "mem": {"BACKEND": "memory"}}
    output = run("clear", "request", "mem", "files")
    assert output.splitlines() == [
        "region 'request' (request): nothing to clear from here: its entries live inside each request "
        "and are gone when the request ends",
        "region 'mem' (memory): nothing to clear from here: its entries live in the memory of each server "
        "process, out of this command's reach; restart them, or give the region OPTIONS sync_with so that "
        "a clear reaches every process",
        "cleared region 'files'",
    ]


def test_clear_request_in_a_real_process(memcached_server: str, tmp_path: Any) -> None:
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "config.settings", "REGIONS_MEMCACHED": memcached_server,
           "REGIONS_VAR_DIR": str(tmp_path)}
    done = subprocess.run([sys.executable, "manage.py", "regions", "clear", "request", "local"], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    first, second = done.stdout.splitlines()
    assert first.startswith("region 'request' (request): nothing to clear from here")
    assert "cleared" not in first
    assert second == "cleared region 'local'"  # synced: the clear reaches every process
