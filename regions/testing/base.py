"""The contract's hooks and fixtures (:class:`ContractBase`) and the helpers its tests use."""

from __future__ import annotations

import contextlib
import contextvars
import threading
import time
import uuid
import wsgiref.util
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, ClassVar

import pytest
from beaker.cache import Cache, clsmap
from beaker.container import NamespaceManager

import regions
from regions.backends import BUILTIN, store_class, why_unknown

from .clock import ExpiryClock

MISSING = object()



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


class ContractBase:
    """Hooks, fixtures and helpers shared by the contract's parts; see :class:`BackendContract`.

    Hooks: :meth:`config` (required), :meth:`scope`, :meth:`beaker_options`, and the class
    attributes below.
    """

    #: Name of the backend for Beaker (``beaker.cache.clsmap``, its ``beaker.backends`` entry point).
    #: ``None``: ``regions.<name>`` for built-in backends; Beaker tests are skipped for others and
    #: for ``""`` (backends that name another region of their configuration).
    beaker_type: ClassVar[str | None] = None
    #: Entries outlive a request (``False`` for the request backend): Beaker sessions can live there.
    persistent: ClassVar[bool] = True
    #: ``{test name: reason}``: tests known to fail on this backend, run as strict ``xfail``.
    expected_failures: ClassVar[dict[str, str]] = {}
    #: Entries expire by this process's clock (``time.time``) alone, as in memory, file and request
    #: regions, and a memory region synced through a server: the expiry tests then move a fake
    #: ``time.time`` on instead of sleeping. ``False`` (the default: a server ages the entries, as
    #: memcached and Redis do, or a tier of them): they wait for real.
    local_expiry: ClassVar[bool] = False

    # hooks ----------------------------------------------------------------------------------
    def config(self, tmp_path: Path, **settings: Any) -> dict[str, Any]:
        """One region's settings for the backend under test, with ``settings`` (TIMEOUT, OPTIONS...)
        merged in. Every call must give a region storage of its own (file backends: a new folder)."""
        raise NotImplementedError(f"{type(self).__name__} must define config(tmp_path, **settings)")

    def linked_regions(self, tmp_path: Path) -> dict[str, dict[str, Any]]:
        """Regions the backend under test works through (``sync_with``, ``over``), added to the
        manager's settings under their own names."""
        return {}

    def scope(self) -> contextlib.AbstractContextManager[Any]:
        """Context every test runs in (the request backend: ``regions.request_scope()``)."""
        return contextlib.nullcontext()

    def beaker_options(self, tmp_path: Path) -> dict[str, Any]:
        """Options for Beaker's ``Cache``/``SessionMiddleware`` (``url``, ``data_dir``...)."""
        if "_beaker_location" not in vars(self):  # pytest makes one instance per test: one storage
            self._beaker_location = self.config(tmp_path).get("LOCATION")
        location = self._beaker_location
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
            **self.linked_regions(tmp_path),
        }
        manager = regions.CacheManager(config, key_prefix="t" + uuid.uuid4().hex[:10])
        for name in config:  # one read each, outside any event loop, then counters from zero: a
            region = manager[name]  # synced region's first look at its log (which drops what the
            region.get("~contract-warm-up")  # process holds) is then over before a test counts
            region.reset_stats()
        try:
            yield manager
        finally:
            manager.close()

    @pytest.fixture
    def clock(self, monkeypatch: pytest.MonkeyPatch) -> ExpiryClock:
        """The clock an expiry test lets time pass on (see :attr:`local_expiry`); ask for it before
        ``cache``: a fake one replaces ``time.time`` before anything reads it."""
        clock = ExpiryClock(self.local_expiry)
        if clock.local:
            monkeypatch.setattr(time, "time", clock)
        return clock

    @pytest.fixture
    def counter(self) -> CallCounter:
        return CallCounter()

    # helpers --------------------------------------------------------------------------------
    def backend_name(self, tmp_path: Path) -> str:
        """``Store.name`` of the backend under test (what ``Region.backend`` reports)."""
        backend = self.config(tmp_path)["BACKEND"]
        found = store_class(backend)
        assert found is not None, "; ".join(why_unknown(backend))  # names the import's own error
        return found.name

    def beaker_name(self, tmp_path: Path) -> str:
        """The Beaker type under test; skips the test when Beaker cannot find the backend."""
        name = self.beaker_type
        if name == "":
            pytest.skip("this backend is built from a configuration only (it names another region)")
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
