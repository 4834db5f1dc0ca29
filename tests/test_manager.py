"""Managers, settings validation, the module-level decorator and the Beaker registry."""

from __future__ import annotations

import asyncio
import inspect
import logging

import pytest
from beaker.cache import Cache, clsmap

import regions
from regions import CacheManager, ConfigurationError, UncacheableArgument, UnknownRegion, config


@pytest.fixture(autouse=True)
def no_default_manager():
    yield
    regions.configure(None)


# settings ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("settings", "pid", "option"),
    [
        ({"r": {"BACKEND": "nope"}}, "E002", "BACKEND"),
        ({"r": {"BACKEND": "memcached"}}, "E003", "LOCATION"),
        ({"r": {"BACKEND": "memcached", "LOCATION": "no-port"}}, "E003", "LOCATION"),
        ({"r": {"BACKEND": "memory", "TIMEOUT": -1}}, "E004", "TIMEOUT"),
        ({"r": {"BACKEND": "memory", "TIMEOUT": "60"}}, "E004", "TIMEOUT"),
        ({"r": {"BACKEND": "memory", "OPTIONS": {"max_entires": 10}}}, "E005", "OPTIONS.max_entires"),
        ({"r": {"BACKEND": "memory", "OPTIONS": {"max_entries": "10"}}}, "E005", "OPTIONS.max_entries"),
        ({"r": {"BACKEND": "memory", "TIMOUT": 10}}, "E001", "TIMOUT"),
        ({"r": {"BACKEND": "memory", "VERSION": "2"}}, "E006", "VERSION"),
        ({"r": {"BACKEND": "request", "LOCATION": "x"}}, "E003", "LOCATION"),
        ({"r": "memory"}, "E001", None),
    ],
)
def test_bad_settings_name_region_option_and_remedy(settings, pid, option):
    problems = config.check(settings)
    assert [(p.id, p.region, p.option) for p in problems][:1] == [(pid, "r", option)]
    assert problems[0].hint
    with pytest.raises(ConfigurationError) as info:
        CacheManager(settings)
    assert info.value.region == "r" and info.value.option == option
    assert "'r'" in str(info.value)


def test_file_location_that_cannot_be_written(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    problems = config.check({"files": {"BACKEND": "file", "LOCATION": blocker / "cache"}})
    assert [p.id for p in problems] == ["E007"]


def test_two_file_regions_cannot_share_a_folder(tmp_path):
    problems = config.check({
        "a": {"BACKEND": "file", "LOCATION": tmp_path},
        "b": {"BACKEND": "file", "LOCATION": str(tmp_path)},
    })
    assert [(p.id, p.region) for p in problems] == [("E003", "b")]


def test_good_settings_have_no_problems(tmp_path):
    assert config.check({
        "functions": {"BACKEND": "memcached", "LOCATION": ["127.0.0.1:1", "127.0.0.1:2"], "TIMEOUT": 3600},
        "files": {"BACKEND": "file", "LOCATION": tmp_path / "files", "TIMEOUT": None},
        "request": {"BACKEND": "request"},
        "local": {"BACKEND": "memory", "OPTIONS": {"max_entries": 5, "raise_errors": True}},
    }) == []


def test_beaker_cache_opts_are_accepted_unchanged(tmp_path):
    opts = {
        "cache.regions": "functions, files",
        "cache.lock_dir": str(tmp_path / "lock"),
        "cache.data_dir": str(tmp_path / "data"),
        "cache.functions.type": "ext:memcached",
        "cache.functions.url": "127.0.0.1:11211",
        "cache.functions.expire": 60 * 60,
        "cache.files.type": "file",
        "cache.files.expire": 5 * 24 * 60 * 60,
    }
    manager = CacheManager(opts)
    assert list(manager) == ["functions", "files"]
    assert (manager["functions"].backend, manager["functions"].timeout) == ("memcached", 3600)
    assert manager["files"].backend == "file"
    assert manager["files"].location == str(tmp_path / "data" / "files")
    assert manager["files"].timeout == 5 * 24 * 60 * 60


def test_unknown_region_lists_configured_ones():
    manager = CacheManager({"local": {"BACKEND": "memory"}, "request": {"BACKEND": "request"}})
    with pytest.raises(UnknownRegion) as info:
        manager["functions"]
    assert isinstance(info.value, KeyError)
    assert "'local', 'request'" in str(info.value)
    with pytest.raises(UnknownRegion):  # at decoration time, not at the first call
        manager.region("functions")


def test_bad_decorator_arguments_fail_at_decoration():
    manager = CacheManager({"local": {"BACKEND": "memory"}})
    with pytest.raises(ConfigurationError, match="timeout=-5"):
        manager.region("local", timeout=-5)(lambda: 1)
    with pytest.raises(ConfigurationError, match="key="):
        manager.region("local", key="not callable")


# managers are independent --------------------------------------------------------------------------


def test_two_managers_with_the_same_region_names_do_not_affect_each_other(tmp_path):
    short = CacheManager({"files": {"BACKEND": "file", "LOCATION": tmp_path / "a", "TIMEOUT": 1}})
    long = CacheManager({"files": {"BACKEND": "file", "LOCATION": tmp_path / "b", "TIMEOUT": 999}})
    assert short["files"].timeout == 1 and long["files"].timeout == 999
    short["files"].set("k", "short")
    assert long["files"].get("k") is None
    assert (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_key_prefix_and_version_separate_entries():
    settings = {"local": {"BACKEND": "memory"}}
    a, b = CacheManager(settings, key_prefix="a"), CacheManager(settings, key_prefix="b", version=2)

    def f(x):
        return x

    fa, fb = a.region("local")(f), b.region("local")(f)
    # <len>:<key prefix>:<len>:<region name>:v<version>:<module.qualname>: never ambiguous
    assert fa.cache_key("x")[0] == f"1:a:5:local:v1:{f.__module__}.{f.__qualname__}"
    assert fb.cache_key("x")[0].startswith("1:b:5:local:v2:")


# the decorator ---------------------------------------------------------------------------------------


def test_decorated_function_keeps_signature_and_docstring():
    manager = CacheManager({"local": {"BACKEND": "memory"}})

    @manager.region("local")
    def area(width: int, height: int = 2) -> int:
        """Area of a rectangle."""
        return width * height

    assert area.__doc__ == "Area of a rectangle."
    assert inspect.signature(area) == inspect.signature(area.uncached)
    assert list(inspect.signature(area).parameters) == ["width", "height"]
    assert area.uncached(3) == 6 and area.region_name == "local"
    with pytest.raises(TypeError, match="unexpected keyword argument 'depth'"):
        area(3, depth=4)


def test_unsupported_argument_names_function_argument_and_remedy():
    manager = CacheManager({"local": {"BACKEND": "memory"}})

    @manager.region("local")
    def handle(request, n):
        return n

    with pytest.raises(UncacheableArgument) as info:
        handle(object(), 1)
    message = str(info.value)
    assert "handle" in message and "'request'" in message
    assert "__cache_key__" in message and "key=" in message
    assert isinstance(info.value, TypeError)


def test_methods_key_self_through_cache_key():
    manager = CacheManager({"local": {"BACKEND": "memory"}})
    calls = []

    class Account:
        def __init__(self, pk):
            self.pk = pk

        def __cache_key__(self):
            return self.pk

        @manager.region("local")
        def balance(self):
            calls.append(self.pk)
            return self.pk * 10

    assert Account(1).balance() == 10 and Account(1).balance() == 10
    assert Account(2).balance() == 20
    assert calls == [1, 2]

    class NoKey:
        @manager.region("local")
        def value(self):
            return 1

    with pytest.raises(UncacheableArgument, match="'self'"):
        NoKey().value()


def test_custom_key_function():
    manager = CacheManager({"local": {"BACKEND": "memory"}})
    calls = []

    @manager.region("local", key=lambda user, request_id: user["id"])
    def profile(user, request_id):
        calls.append(request_id)
        return user["id"]

    assert profile({"id": 5}, "r1") == profile({"id": 5}, "r2") == 5
    assert calls == ["r1"]


def test_per_decorator_timeout_overrides_region_timeout():
    manager = CacheManager({"local": {"BACKEND": "memory", "TIMEOUT": 1}})
    forever = manager.region("local", timeout=None)(lambda x: x)
    assert forever(1) == 1
    ns = manager["local"].namespace(f"{forever.__module__}.{forever.__qualname__}")
    assert ns.get_entry((1,))[1] is None


def test_none_is_cached_and_exceptions_are_not():
    manager = CacheManager({"local": {"BACKEND": "memory"}})
    calls = []

    @manager.region("local")
    def lookup(x):
        calls.append(x)
        if x < 0:
            raise ValueError(x)
        return None

    assert lookup(1) is None and lookup(1) is None
    for _ in range(2):
        with pytest.raises(ValueError):
            lookup(-1)
    assert calls == [1, -1, -1]


def test_module_level_region_binds_at_first_call_and_follows_configure():
    calls = []

    @regions.region("late")
    def late(x):
        calls.append(x)
        return x

    with pytest.raises(regions.RegionError, match="not configured"):
        late(1)
    regions.configure({"late": {"BACKEND": "memory"}})
    assert late(1) == late(1) == 1
    assert calls == [1]
    regions.configure({"late": {"BACKEND": "memory"}})  # a new manager: a new, empty region
    late(1)
    assert calls == [1, 1]
    assert regions.get_manager()["late"].stats()["misses"] == 1
    regions.configure({"other": {"BACKEND": "memory"}})
    with pytest.raises(UnknownRegion):
        late(1)


def test_async_functions_cache_the_awaited_value():
    manager = CacheManager({"local": {"BACKEND": "memory"}})
    calls = []

    @manager.region("local")
    async def fetch(x):
        calls.append(x)
        await asyncio.sleep(0.01)
        return {"x": x}

    async def main():
        results = await asyncio.gather(*(fetch(1) for _ in range(10)))
        assert all(r == {"x": 1} for r in results)
        assert calls == [1]  # ten concurrent misses, one computation
        assert await fetch.refresh(1) == {"x": 1} and calls == [1, 1]
        await fetch.invalidate(1)
        await fetch(1)
        assert calls == [1, 1, 1]

    asyncio.run(main())
    assert inspect.iscoroutinefunction(fetch)


def test_failing_backend_returns_the_function_result_and_counts(tmp_path, caplog):
    blocker = tmp_path / "blocker"
    blocker.write_text("a file where the region wants a folder")
    manager = CacheManager({"files": {"BACKEND": "file", "LOCATION": tmp_path / "files"}})
    manager["files"].store.root = blocker  # the disk changed under a running process

    @manager.region("files")
    def double(x):
        return 2 * x

    with caplog.at_level(logging.WARNING, logger="regions"):
        assert double(4) == 8 and double(4) == 8
    assert manager["files"].stats()["errors"] >= 2
    assert "cache region 'files' (file)" in caplog.text

    strict = CacheManager({"files": {"BACKEND": "file", "LOCATION": tmp_path / "f2",
                                     "OPTIONS": {"raise_errors": True}}})
    strict["files"].store.root = blocker
    with pytest.raises(OSError):
        strict.region("files")(lambda x: x)(1)


# Beaker ---------------------------------------------------------------------------------------------


def test_backends_are_registered_with_beaker():
    for name in ("memcached", "file", "request", "memory"):
        assert clsmap[f"regions.{name}"].store_class.name == name


def test_beaker_cache_objects_can_use_our_namespace_managers():
    cache = Cache("tests.namespace", type="regions.memory")
    calls = []

    def create():
        calls.append(1)
        return "value"

    assert cache.get(key="k", createfunc=create) == "value"
    assert cache.get(key="k", createfunc=create) == "value"
    assert calls == [1]


def test_module_level_region_tolerates_names_missing_from_the_current_settings():
    regions.configure({"a": {"BACKEND": "memory"}})

    @regions.region("b")  # e.g. imported while a test's override_settings lacks "b"
    def g(x):
        return x

    with pytest.raises(UnknownRegion, match="'b'"):
        g(1)
    regions.configure({"b": {"BACKEND": "memory"}})
    assert g(1) == g(1) == 1
    assert regions.get_manager()["b"].stats()["hits"] == 1


def test_key_memos_never_mix_equal_values_of_other_types(tmp_path):
    manager = CacheManager({"files": {"BACKEND": "file", "LOCATION": tmp_path}})
    calls = []

    @manager.region("files")
    def echo(x):
        calls.append(x)
        return x

    for x in range(1100):  # past the memo's size: it starts over and stays right
        echo(x)
    results = [echo(1), echo(True), echo(1.0), echo("1"), echo(0), echo(False)]
    assert [(type(r), r) for r in results] == [
        (int, 1), (bool, True), (float, 1.0), (str, "1"), (int, 0), (bool, False)
    ]
    assert calls[1100:] == [True, 1.0, "1", False]
    assert len({echo.cache_key(v) for v in (1, True, 1.0, "1")}) == 4
