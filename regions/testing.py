"""The backend contract as a reusable pytest suite: run it against your own backend.

Every built-in backend passes it (``tests/test_contract.py`` holds one subclass each). A third-party
backend, set as ``"BACKEND": "package.module:Class"``, runs the same tests by subclassing
:class:`BackendContract` in one of its test modules::

    import uuid

    from regions.testing import BackendContract


    class TestMyBackend(BackendContract):
        #: its ``beaker.backends`` entry point name; without one the Beaker tests are skipped
        beaker_type = "package.mybackend"

        def config(self, tmp_path, **settings):
            # one region's settings; each call must name storage of its own
            location = str(tmp_path / uuid.uuid4().hex)
            return {"BACKEND": "package.module:Class", "LOCATION": location, **settings}

A backend needing a server gets it from a fixture of its own, saved on ``self`` by an autouse fixture
(``config`` is called after autouse fixtures); see ``TestMemcached`` in ``tests/test_contract.py``.

This module imports pytest: import it from tests only (``import regions`` never imports it).
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import inspect
import os
import threading
import time
import uuid
import wsgiref.util
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, ClassVar

import pytest
from beaker.cache import Cache, clsmap
from beaker.container import NamespaceManager, Value
from beaker.middleware import CacheMiddleware, SessionMiddleware

import regions
from regions.api import Store
from regions.backends import BUILTIN, store_class

MISSING = object()

__all__ = ["BackendContract", "CallCounter", "WsgiClient"]


class CallCounter:
    """Thread-safe call counter: ``counter()`` counts a call and returns the new count."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.count = 0

    def __call__(self) -> int:
        with self._lock:
            self.count += 1
            return self.count


class WsgiClient:
    """Calls a WSGI app directly, keeping the cookie it sets, as one browser would."""

    def __init__(self) -> None:
        self.cookies: dict[str, str] = {}

    def get(self, app: Callable[..., Iterable[bytes]], path: str = "/") -> str:
        environ: dict[str, Any] = {}
        wsgiref.util.setup_testing_defaults(environ)
        environ["PATH_INFO"] = path
        if self.cookies:
            environ["HTTP_COOKIE"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        response: dict[str, Any] = {}

        def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> None:
            response.update(status=status, headers=headers)

        result = app(environ, start_response)
        try:
            body = b"".join(result)
        finally:
            close = getattr(result, "close", None)
            if close is not None:
                close()
        assert response["status"].startswith("200"), response["status"]
        for name, value in response["headers"]:
            if name.lower() == "set-cookie":
                key, _, rest = value.partition("=")
                self.cookies[key.strip()] = rest.split(";", 1)[0]
        return body.decode()


def _session_counter_app(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
    """``/``: count this session's requests; ``/delete``: delete the session."""
    session = environ["beaker.session"]
    if environ["PATH_INFO"] == "/delete":
        session.delete()
        text = "deleted"
    else:
        session["n"] = session.get("n", 0) + 1
        session.save()
        text = str(session["n"])
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [text.encode()]


def _cache_counter_app(namespace: str) -> Callable[..., list[bytes]]:
    """``/``: increment a counter kept in Beaker cache ``namespace``; ``/clear``: clear that cache."""

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        cache = environ["beaker.cache"].get_cache(namespace)
        if environ["PATH_INFO"] == "/clear":
            cache.clear()
        try:
            value = cache.get_value("n")
        except KeyError:
            value = 0
        cache.set_value("n", value + 1)
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [str(cache.get_value("n")).encode()]

    return app


def _run_threads(count: int, target: Callable[[], None]) -> None:
    """Run ``target`` in ``count`` threads at once, each in a copy of the caller's context (so a
    request scope is seen there too); re-raise the first error."""
    errors: list[BaseException] = []
    barrier = threading.Barrier(count)

    def run() -> None:
        try:
            barrier.wait(10)
            target()
        except BaseException as exc:  # reported to the caller below
            errors.append(exc)

    threads = [threading.Thread(target=contextvars.copy_context().run, args=(run,)) for _ in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    if errors:
        raise errors[0]


class BackendContract:
    """What every regions backend must do; subclass it once per backend (named ``Test...``).

    Hooks: :meth:`config` (required), :meth:`scope`, :meth:`beaker_options`, and the class
    attributes below.
    """

    #: Name of the backend for Beaker (``beaker.cache.clsmap``, its ``beaker.backends`` entry point).
    #: ``None``: ``regions.<name>`` for built-in backends; Beaker tests are skipped for others.
    beaker_type: ClassVar[str | None] = None
    #: Entries outlive a request (``False`` for the request backend): Beaker sessions can live there.
    persistent: ClassVar[bool] = True
    #: ``{test name: reason}``: tests known to fail on this backend, run as strict ``xfail``.
    expected_failures: ClassVar[dict[str, str]] = {}

    # hooks ----------------------------------------------------------------------------------
    def config(self, tmp_path: Path, **settings: Any) -> dict[str, Any]:
        """One region's settings for the backend under test, with ``settings`` (TIMEOUT, OPTIONS...)
        merged in. Every call must give a region storage of its own (file backends: a new folder)."""
        raise NotImplementedError(f"{type(self).__name__} must define config(tmp_path, **settings)")

    def scope(self) -> contextlib.AbstractContextManager[Any]:
        """Context every test runs in (the request backend: ``regions.request_scope()``)."""
        return contextlib.nullcontext()

    def beaker_options(self, tmp_path: Path) -> dict[str, Any]:
        """Options for Beaker's ``Cache``/``SessionMiddleware`` (``url``, ``data_dir``...)."""
        location = self.config(tmp_path).get("LOCATION")
        return {} if location is None else {"url": str(location)}

    # fixtures -------------------------------------------------------------------------------
    @pytest.fixture(autouse=True)
    def _contract_scope(self, request: pytest.FixtureRequest) -> Iterator[None]:
        reason = self.expected_failures.get(request.function.__name__)
        if reason:
            request.applymarker(pytest.mark.xfail(reason=reason, strict=True))
        with self.scope():
            yield

    @pytest.fixture
    def cache(self, tmp_path: Path) -> Iterator[regions.CacheManager]:
        """A manager whose regions all use the backend under test: main (TIMEOUT 300), other (same
        server/kind as main, separate storage where the backend needs it), short (TIMEOUT 1), forever
        (TIMEOUT None); a unique key prefix, so tests never see each other's entries."""
        config = {
            "main": self.config(tmp_path, TIMEOUT=300),
            "other": self.config(tmp_path, TIMEOUT=300),
            "short": self.config(tmp_path, TIMEOUT=1),
            "forever": self.config(tmp_path, TIMEOUT=None),
        }
        manager = regions.CacheManager(config, key_prefix="t" + uuid.uuid4().hex[:10])
        try:
            yield manager
        finally:
            manager.close()

    @pytest.fixture
    def counter(self) -> CallCounter:
        return CallCounter()

    # helpers --------------------------------------------------------------------------------
    def backend_name(self, tmp_path: Path) -> str:
        """``Store.name`` of the backend under test (what ``Region.backend`` reports)."""
        found = store_class(self.config(tmp_path)["BACKEND"])
        assert found is not None, f"unknown BACKEND {self.config(tmp_path)['BACKEND']!r}"
        return found.name

    def beaker_name(self, tmp_path: Path) -> str:
        """The Beaker type under test; skips the test when Beaker cannot find the backend."""
        name = self.beaker_type
        if name is None:
            backend = str(self.config(tmp_path)["BACKEND"]).removeprefix("regions.")
            if backend not in BUILTIN:
                pytest.skip("set beaker_type to the backend's beaker.backends entry point name")
            name = f"regions.{backend}"
        try:
            clsmap[name]
        except KeyError:
            pytest.skip(f"Beaker does not know {name!r}: register it as a beaker.backends entry point")
        return name

    def beaker_cache(self, tmp_path: Path, namespace: str | None = None, **kwargs: Any) -> Cache:
        """A ``beaker.cache.Cache`` on the backend under test (a fresh namespace unless named)."""
        options = {**self.beaker_options(tmp_path), **kwargs}
        return Cache(namespace or uuid.uuid4().hex, type=self.beaker_name(tmp_path), **options)

    def beaker_namespace(self, tmp_path: Path, namespace: str) -> NamespaceManager:
        """A namespace manager made the way Beaker makes them: ``clsmap[type](namespace, **options)``."""
        return clsmap[self.beaker_name(tmp_path)](namespace, **self.beaker_options(tmp_path))

    # ---------------------------------------------------------------------------------------
    # Region API

    def test_region_attributes(self, cache: regions.CacheManager, tmp_path: Path) -> None:
        region = cache["main"]
        assert region.name == "main"
        assert region.backend == self.backend_name(tmp_path)
        assert region.timeout == 300
        assert cache["forever"].timeout is None
        assert region.active is True
        assert region.ping() is True
        assert set(cache) == {"main", "other", "short", "forever"}
        assert "main" in cache and "nope" not in cache
        with pytest.raises(regions.UnknownRegion) as info:
            cache["nope"]
        assert isinstance(info.value, KeyError)
        assert "main" in str(info.value)

    def test_get_set_delete(self, cache: regions.CacheManager) -> None:
        region = cache["main"]
        assert region.get("k") is None
        assert region.get("k", MISSING) is MISSING
        region.set("k", {"a": [1, 2, 3]})
        assert region.get("k") == {"a": [1, 2, 3]}
        region.set("k", "replaced")
        assert region.get("k") == "replaced"
        region.delete("k")
        assert region.get("k", MISSING) is MISSING
        region.delete("k")  # deleting a missing key is fine
        assert region.get("k", MISSING) is MISSING

    def test_none_value_is_cached(self, cache: regions.CacheManager, counter: CallCounter) -> None:
        region = cache["main"]
        region.set("nothing", None)
        assert region.get("nothing", MISSING) is None

        @cache.region("main")
        def lookup(x: int) -> None:
            counter()
            return None

        assert lookup(1) is None
        assert lookup(1) is None
        assert counter.count == 1

    def test_tuple_and_int_keys(self, cache: regions.CacheManager) -> None:
        region = cache["main"]
        region.set(("a", 1), "tuple")
        region.set(1, "int")
        assert region.get(("a", 1)) == "tuple"
        assert region.get(("a", "1"), MISSING) is MISSING
        assert region.get(["a", 1], MISSING) in (MISSING, "tuple")  # a list may alias the tuple; never other
        assert region.get(1) == "int"
        assert region.get("1", MISSING) is MISSING

    def test_unicode_keys_and_values(self, cache: regions.CacheManager, counter: CallCounter) -> None:
        region = cache["main"]
        key = "ключ 鍵 🔑 with spaces\tand\ncontrol"
        value = "значение ✓ 🎉 " * 100
        region.set(key, value)
        assert region.get(key) == value
        assert region.get(key.replace("🔑", "🗝"), MISSING) is MISSING

        @cache.region("main")
        def greet(name: str) -> str:
            counter()
            return f"привет, {name}!"

        assert greet("мир 世界") == "привет, мир 世界!"
        assert greet("мир 世界") == "привет, мир 世界!"
        assert greet("мир 世界 ") == "привет, мир 世界 !"
        assert counter.count == 2

    def test_large_values(self, cache: regions.CacheManager, counter: CallCounter) -> None:
        region = cache["main"]
        blob = os.urandom(5 * 1024 * 1024)
        region.set("blob", blob)
        assert region.get("blob") == blob

        text = "ü" * (3 * 1024 * 1024)
        region.set("text", text)
        assert region.get("text") == text

        @cache.region("main")
        def big(n: int) -> bytes:
            counter()
            return bytes([n]) * (4 * 1024 * 1024)

        assert big(7) == b"\x07" * (4 * 1024 * 1024)
        assert big(7) == b"\x07" * (4 * 1024 * 1024)
        assert counter.count == 1

    def test_get_or_create(self, cache: regions.CacheManager, counter: CallCounter) -> None:
        region = cache["main"]

        def creator() -> list[Any]:
            return ["made", counter()]

        assert region.get_or_create("k", creator) == ["made", 1]
        assert region.get_or_create("k", creator) == ["made", 1]
        assert counter.count == 1
        assert region.get("k") == ["made", 1]
        region.delete("k")
        assert region.get_or_create("k", creator) == ["made", 2]

    def test_stats_count_hits_and_misses(self, cache: regions.CacheManager) -> None:
        region = cache["main"]
        region.reset_stats()
        stats = region.stats()
        assert stats["hits"] == stats["misses"] == stats["errors"] == stats["sets"] == 0
        assert stats["hit_rate"] is None
        assert stats["mean_latency"] is None

        assert region.get("absent") is None
        region.set("present", 1)
        assert region.get("present") == 1
        assert region.get("present") == 1
        stats = region.stats()
        assert stats["misses"] == 1
        assert stats["hits"] == 2
        assert stats["sets"] == 1
        assert stats["errors"] == 0
        assert stats["hit_rate"] == pytest.approx(2 / 3)
        if region.store.timed:  # in-process stores may skip timing (costlier than the call)
            assert stats["time_spent"] > 0
            assert stats["mean_latency"] > 0
        else:
            assert stats["time_spent"] >= 0
            assert stats["mean_latency"] is None or stats["mean_latency"] >= 0

        @cache.region("main")
        def f(x: int) -> int:
            return x * 2

        region.reset_stats()
        f(1)
        f(1)
        f(1)
        stats = region.stats()
        assert (stats["misses"], stats["hits"], stats["sets"]) == (1, 2, 1)
        assert cache["other"].stats()["hits"] == 0  # stats are per region

    def test_expiry_and_timeout_none(self, cache: regions.CacheManager) -> None:
        short, forever = cache["short"], cache["forever"]
        short.set("default-timeout", 1)
        short.set("explicit-none", 2, timeout=None)
        forever.set("region-none", 3)
        forever.set("explicit-one", 4, timeout=1)
        start = time.monotonic()
        assert short.get("default-timeout") == 1
        assert forever.get("explicit-one") == 4
        # memcached has one-second resolution: a 1 s entry lives between 1 and 2 s.
        while (
            short.get("default-timeout", MISSING) is not MISSING
            or forever.get("explicit-one", MISSING) is not MISSING
        ):
            assert time.monotonic() - start < 3.5, "entries with timeout 1 s did not expire"
            time.sleep(0.1)
        assert time.monotonic() - start >= 0.9, "entry expired before its timeout"
        assert short.get("explicit-none") == 2
        assert forever.get("region-none") == 3

    def test_decorated_function_expires(self, cache: regions.CacheManager, counter: CallCounter) -> None:
        @cache.region("short")
        def f() -> int:
            return counter()

        assert f() == 1
        assert f() == 1
        time.sleep(2.1)
        assert f() == 2

    def test_clear_only_clears_that_region(self, cache: regions.CacheManager) -> None:
        main, other = cache["main"], cache["other"]
        calls = []

        @cache.region("main")
        def f(x: int) -> int:
            calls.append(("f", x))
            return x

        @cache.region("other")
        def g(x: int) -> int:
            calls.append(("g", x))
            return x

        main.set("shared-key", "main")
        other.set("shared-key", "other")
        f(1), g(1)
        assert main.get("shared-key") == "main"
        assert other.get("shared-key") == "other"

        main.clear()
        assert main.get("shared-key", MISSING) is MISSING
        assert other.get("shared-key") == "other"
        f(1), g(1)
        assert calls == [("f", 1), ("g", 1), ("f", 1)]
        main.set("after", 1)
        assert main.get("after") == 1  # region usable after clear()

    def test_count_where_supported(self, cache: regions.CacheManager) -> None:
        region = cache["main"]
        if type(region.store).count is Store.count:  # the backend cannot count (memcached)
            assert region.count() is None
            return
        assert region.count() == 0
        for i in range(5):
            region.set(("k", i), i)
        region.set(("k", 0), "again")
        assert region.count() == 5
        region.delete(("k", 1))
        assert region.count() == 4
        region.clear()
        assert region.count() == 0

    # ---------------------------------------------------------------------------------------
    # Decorated functions

    def test_decorator_keeps_metadata(self, cache: regions.CacheManager) -> None:
        def original(a: Any, b: int = 2, *, c: str = "x") -> Any:
            """Docstring."""
            return a

        wrapped = cache.region("main")(original)
        assert wrapped.__name__ == "original"
        assert wrapped.__doc__ == "Docstring."
        assert inspect.signature(wrapped) == inspect.signature(original)
        assert wrapped.__wrapped__ is original

    def test_decorator_hit_miss_invalidate_refresh(self, cache: regions.CacheManager) -> None:
        calls = []

        @cache.region("main")
        def f(x: int) -> list[int]:
            calls.append(x)
            return [x, len(calls)]

        assert f(1) == [1, 1]  # miss
        assert f(1) == [1, 1]  # hit
        assert f(2) == [2, 2]  # miss
        assert calls == [1, 2]

        f.invalidate(1)
        assert f(1) == [1, 3]
        assert f(2) == [2, 2]  # untouched

        assert f.refresh(2) == [2, 4]
        assert f(2) == [2, 4]  # refresh stored the new value
        assert calls == [1, 2, 1, 2]

        assert f.uncached(1) == [1, 5]
        assert f.uncached(1) == [1, 6]
        assert f(1) == [1, 3]  # uncached calls do not store

    def test_invalidate_all_only_that_function(self, cache: regions.CacheManager) -> None:
        calls = []

        @cache.region("main")
        def f(x: int) -> int:
            calls.append(("f", x))
            return x

        @cache.region("main")
        def g(x: int) -> int:
            calls.append(("g", x))
            return x

        for x in (1, 2):
            f(x), g(x)
        f.invalidate_all()
        for x in (1, 2):
            f(x), g(x)
        assert calls == [("f", 1), ("g", 1), ("f", 2), ("g", 2), ("f", 1), ("f", 2)]

    def test_cache_key(self, cache: regions.CacheManager) -> None:
        @cache.region("main")
        def f(a: int, b: int = 2) -> int:
            return a

        key = f.cache_key(1)
        hash(key)  # text for memcached/file, may be a tuple for in-process stores
        assert key == f.cache_key(1, 2) == f.cache_key(a=1) == f.cache_key(b=2, a=1)
        assert key != f.cache_key(1, 3)
        assert key != f.cache_key(2)

    def test_cache_key_includes_the_namespace(self, cache: regions.CacheManager) -> None:
        """Two functions with the same arguments are different entries, so their keys must differ."""

        @cache.region("main")
        def f(a: int, b: int = 2) -> int:
            return a

        @cache.region("main")
        def g(a: int, b: int = 2) -> int:
            return a

        assert f.cache_key(1) != g.cache_key(1)

    def test_decorator_with_custom_timeout(self, cache: regions.CacheManager, counter: CallCounter) -> None:
        @cache.region("forever", timeout=1)
        def f() -> int:
            return counter()

        assert f() == f() == 1
        time.sleep(2.1)
        assert f() == 2  # the per-function timeout (1 s) overrides the region's None

    def test_decorator_with_key_callable(self, cache: regions.CacheManager, counter: CallCounter) -> None:
        @cache.region("main", key=lambda user, verbose=False: user["id"])
        def profile(user: dict[str, Any], verbose: bool = False) -> tuple[int, int]:
            return (user["id"], counter())

        assert profile({"id": 7, "name": "a"}) == (7, 1)
        assert profile({"id": 7, "name": "changed"}, verbose=True) == (7, 1)  # the key callable decides
        assert profile({"id": 8}) == (8, 2)
        assert profile.cache_key({"id": 7}) != profile.cache_key({"id": 8})
        profile.invalidate({"id": 7})
        assert profile({"id": 7}) == (7, 3)

    def test_async_function_awaited_value_is_cached(self, cache: regions.CacheManager) -> None:
        calls = []

        @cache.region("main")
        async def fetch(x: int) -> dict[str, int]:
            calls.append(x)
            await asyncio.sleep(0)
            return {"x": x, "n": len(calls)}

        assert inspect.iscoroutinefunction(fetch)

        async def twice() -> tuple[Any, Any]:
            return await fetch(1), await fetch(1)

        first, second = asyncio.run(twice())
        assert first == second == {"x": 1, "n": 1}
        # A new event loop must get the stored value, not a (spent) coroutine.
        assert asyncio.run(fetch(1)) == {"x": 1, "n": 1}
        assert calls == [1]

        async def invalidate_then_call() -> Any:
            await fetch.invalidate(1)
            return await fetch(1)

        assert asyncio.run(invalidate_then_call()) == {"x": 1, "n": 2}

        async def refresh() -> Any:
            return await fetch.refresh(1)

        assert asyncio.run(refresh()) == {"x": 1, "n": 3}
        assert asyncio.run(fetch(1)) == {"x": 1, "n": 3}

        async def invalidate_all() -> Any:
            await fetch.invalidate_all()
            return await fetch(1)

        assert asyncio.run(invalidate_all()) == {"x": 1, "n": 4}
        assert calls == [1, 1, 1, 1]

    def test_async_exception_not_cached(self, cache: regions.CacheManager) -> None:
        calls = []

        @cache.region("main")
        async def flaky() -> str:
            calls.append(1)
            if len(calls) == 1:
                raise RuntimeError("first call fails")
            return "ok"

        with pytest.raises(RuntimeError):
            asyncio.run(flaky())
        assert asyncio.run(flaky()) == "ok"
        assert asyncio.run(flaky()) == "ok"
        assert len(calls) == 2

    def test_exceptions_are_not_cached(self, cache: regions.CacheManager) -> None:
        calls = []

        @cache.region("main")
        def flaky(x: int) -> int:
            calls.append(x)
            if len(calls) == 1:
                raise ValueError("boom")
            return x * 10

        with pytest.raises(ValueError, match="boom"):
            flaky(1)
        assert flaky(1) == 10
        assert flaky(1) == 10
        assert calls == [1, 1]

    def test_typed_keys(self, cache: regions.CacheManager) -> None:
        calls = []

        @cache.region("main")
        def f(x: Any) -> tuple[str, str]:
            calls.append(x)
            return (type(x).__name__, repr(x))

        args = [1, "1", 1.0, True, None, "None"]
        expected = [
            ("int", "1"),
            ("str", "'1'"),
            ("float", "1.0"),
            ("bool", "True"),
            ("NoneType", "None"),
            ("str", "'None'"),
        ]
        assert [f(a) for a in args] == expected
        assert [f(a) for a in args] == expected
        assert len(calls) == 6
        assert len({f.cache_key(a) for a in args}) == 6

    def test_calls_that_do_not_fit_the_signature_raise_typeerror(self, cache: regions.CacheManager) -> None:
        calls = []

        @cache.region("main")
        def f(a: int, b: int = 2) -> int:
            calls.append(a)
            return a

        bad_calls = (lambda: f(), lambda: f(1, 2, 3), lambda: f(1, c=3), lambda: f(1, a=1))  # type: ignore
        for bad_call in bad_calls:
            with pytest.raises(TypeError) as info:
                bad_call()
            assert not isinstance(info.value, regions.UncacheableArgument)
        assert calls == []
        assert f(1) == 1

    def test_defaults_are_applied(self, cache: regions.CacheManager) -> None:
        calls = []

        @cache.region("main")
        def g(a: int, b: int = 2) -> int:
            calls.append((a, b))
            return a + b

        assert g(10) == g(10, 2) == g(a=10) == g(b=2, a=10) == g(10, b=2) == 12
        assert calls == [(10, 2)]
        assert g(10, 3) == 13
        assert calls == [(10, 2), (10, 3)]

    def test_methods_use_cache_key_of_self(self, cache: regions.CacheManager) -> None:
        calls = []

        class Account:
            def __init__(self, pk: int) -> None:
                self.pk = pk

            def __cache_key__(self) -> int:
                return self.pk

            @cache.region("main")
            def balance(self, currency: str = "EUR") -> int:
                calls.append((self.pk, currency))
                return self.pk * 100

        assert Account(1).balance() == 100
        assert Account(1).balance("EUR") == 100  # a different instance, same __cache_key__
        assert Account(2).balance() == 200
        assert calls == [(1, "EUR"), (2, "EUR")]

    def test_default_manager_resolved_at_call_time(self, tmp_path: Path) -> None:
        regions.configure(None)  # the Django tests leave their manager as the default
        calls = []

        @regions.region("late")
        def f(x: int) -> int:
            calls.append(x)
            return x

        try:
            regions.configure({"late": self.config(tmp_path)}, key_prefix="late-a" + uuid.uuid4().hex)
            assert f(1) == f(1) == 1
            assert calls == [1]
            assert regions.get_manager()["late"].backend == self.backend_name(tmp_path)
            regions.configure({"late": self.config(tmp_path)}, key_prefix="late-b" + uuid.uuid4().hex)
            assert f(1) == 1  # the new manager (new prefix / new location) is used
            assert calls == [1, 1]
        finally:
            regions.configure(None)
        with pytest.raises(regions.RegionError):
            regions.get_manager()

    # ---------------------------------------------------------------------------------------
    # Beaker's NamespaceManager contract, through Beaker's own objects

    def test_beaker_namespace_manager_stores_values_as_is(self, tmp_path: Path) -> None:
        ns = self.beaker_namespace(tmp_path, uuid.uuid4().hex)
        entry_like = [(1.0, None, "shaped like an entry"), (time.time(), 300, "x")]
        values = [{"session": 1}, *entry_like, None, b"\0", [1]]
        for i, value in enumerate(values):
            ns[f"k{i}"] = value
            assert f"k{i}" in ns and ns.has_key(f"k{i}")
            assert ns[f"k{i}"] == value
        ns.set_value("ttl", {"a": 1}, expiretime=1)
        assert ns["ttl"] == {"a": 1}
        with pytest.raises(KeyError):
            ns["missing"]
        assert "missing" not in ns
        del ns["k0"]
        assert "k0" not in ns
        with pytest.raises(KeyError):
            ns["k0"]
        ns.acquire_write_lock(replace=True)  # Beaker's sessions bracket their writes with these
        ns.release_write_lock()
        ns.acquire_read_lock()
        ns.release_read_lock()
        time.sleep(1.1)
        assert "ttl" not in ns
        with pytest.raises(KeyError):
            ns["ttl"]
        assert ns["k1"] == values[1]
        ns.remove()
        assert "k1" not in ns

    def test_beaker_cache_get_put_remove(self, tmp_path: Path) -> None:
        cache = self.beaker_cache(tmp_path)
        with pytest.raises(KeyError):
            cache.get_value("k")
        assert not cache.has_key("k") and "k" not in cache
        cache.put("k", {"a": [1, 2]})
        assert cache.has_key("k") and "k" in cache
        assert cache.get("k") == cache["k"] == {"a": [1, 2]}
        cache["k"] = "replaced"
        assert cache.get_value("k") == "replaced"
        cache.set_value("none", None)
        assert "none" in cache
        assert cache.get_value("none") is None
        cache.remove_value("k")
        assert "k" not in cache
        del cache["none"]
        assert "none" not in cache
        cache.remove_value("never-set")  # removing a missing key is fine

    def test_beaker_cache_createfunc_and_expiry(self, tmp_path: Path, counter: CallCounter) -> None:
        cache = self.beaker_cache(tmp_path)
        assert cache.get("k", createfunc=lambda: ["made", counter()]) == ["made", 1]
        assert cache.get("k", createfunc=lambda: ["made", counter()]) == ["made", 1]
        assert cache.get_value("k") == ["made", 1]  # stored: readable without createfunc
        assert cache.get("short", createfunc=counter, expiretime=1) == 2
        assert cache.get("short", createfunc=counter, expiretime=1) == 2
        expiring = self.beaker_cache(tmp_path, expire=1)
        expiring.put("k", "soon gone")
        assert expiring.get_value("k") == "soon gone"
        time.sleep(1.1)
        assert cache.get("short", createfunc=counter, expiretime=1) == 3
        assert "k" not in expiring
        assert cache.get_value("k") == ["made", 1]

    def test_beaker_cache_keys(self, tmp_path: Path) -> None:
        cache = self.beaker_cache(tmp_path)
        keys = ["hiŏ", "hi ŏ", "has space", "tab\tnew\nline", "Очень длинная строка, " * 20]
        for i, key in enumerate(keys):
            cache.set_value(key, i)
        for i, key in enumerate(keys):
            assert key in cache
            assert cache.get_value(key) == i
        for other in ("hŏa", "hasspace", "Очень длинная строка, " * 19):
            assert other not in cache
        for key in keys:
            cache.remove_value(key)
            assert key not in cache

    def test_beaker_cache_clear_only_its_namespace(self, tmp_path: Path) -> None:
        first, second = self.beaker_cache(tmp_path), self.beaker_cache(tmp_path)
        first.put("k", 1)
        second.put("k", 2)
        first.clear()
        assert "k" not in first
        assert second.get_value("k") == 2
        first.put("k", 3)  # usable after clear()
        assert first.get_value("k") == 3

    def test_beaker_caches_of_one_namespace_share_entries(self, tmp_path: Path) -> None:
        namespace = uuid.uuid4().hex
        first, second = self.beaker_cache(tmp_path, namespace), self.beaker_cache(tmp_path, namespace)
        first.put("k", "v")
        assert second.has_key("k")
        assert second.get_value("k") == "v"
        second.remove_value("k")
        assert "k" not in first

    def test_beaker_value_shared_by_threads_creates_once(self, tmp_path: Path, counter: CallCounter) -> None:
        def create() -> str:
            counter()
            time.sleep(0.2)
            return "made"

        value = Value("key", self.beaker_namespace(tmp_path, uuid.uuid4().hex), createfunc=create)
        value.clear_value()

        def read() -> None:
            for _ in range(5):
                assert value.get_value() == "made"

        _run_threads(7, read)
        assert counter.count == 1

    def test_beaker_values_of_separate_managers_create_once(
        self, tmp_path: Path, counter: CallCounter
    ) -> None:
        """As Beaker's thread-local container test: every thread makes its own manager and Value."""
        namespace = uuid.uuid4().hex

        def create() -> str:
            counter()
            time.sleep(0.2)
            return "made"

        def read() -> None:
            value = Value("key", self.beaker_namespace(tmp_path, namespace), createfunc=create)
            for _ in range(5):
                assert value.get_value() == "made"

        _run_threads(7, read)
        assert counter.count == 1

    def test_beaker_sessions_survive_between_requests(self, tmp_path: Path) -> None:
        if not self.persistent:
            pytest.skip("entries of this backend do not outlive a request")
        config = {"session.type": self.beaker_name(tmp_path), "session.key": "sid"}
        config.update({f"session.{k}": v for k, v in self.beaker_options(tmp_path).items()})
        workers = [SessionMiddleware(_session_counter_app, config) for _ in range(2)]  # two app processes
        alice, bob = WsgiClient(), WsgiClient()
        assert [alice.get(workers[i % 2]) for i in range(3)] == ["1", "2", "3"]
        assert "sid" in alice.cookies
        assert bob.get(workers[0]) == "1"  # a new session of its own
        assert bob.cookies["sid"] != alice.cookies["sid"]
        assert alice.get(workers[1]) == "4"
        assert alice.get(workers[0], "/delete") == "deleted"
        assert alice.get(workers[1]) == "1"  # the deleted session's data is gone
        assert bob.get(workers[1]) == "2"

    def test_beaker_cache_middleware(self, tmp_path: Path) -> None:
        config = {"cache.type": self.beaker_name(tmp_path)}
        config.update({f"cache.{k}": v for k, v in self.beaker_options(tmp_path).items()})
        app = CacheMiddleware(_cache_counter_app(uuid.uuid4().hex), config)
        client = WsgiClient()
        assert [client.get(app) for _ in range(3)] == ["1", "2", "3"]
        assert client.get(app, "/clear") == "1"
        assert client.get(app) == "2"
