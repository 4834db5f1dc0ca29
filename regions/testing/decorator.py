"""Decorated functions: keys, hits, invalidation, refresh, async, errors."""

from __future__ import annotations

import asyncio
import inspect
import uuid
from pathlib import Path
from typing import Any

import pytest

import regions

from .base import CallCounter, ContractBase
from .clock import ExpiryClock


class DecoratorContract(ContractBase):
    """Decorated functions: keys, hits, invalidation, refresh, async, errors."""

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

    def test_decorator_with_custom_timeout(
        self, clock: ExpiryClock, cache: regions.CacheManager, counter: CallCounter
    ) -> None:
        @cache.region("forever", timeout=1)
        def f() -> int:
            return counter()

        assert f() == f() == 1
        # the per-function timeout (1 s) overrides the region's None
        passed = clock.until(lambda: f() != 1, within=3.5, what="its timeout (1 s) did not expire f()")
        assert passed >= 0.9, "f() expired before its timeout (1 s)"
        assert f() == 2

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
            linked = self.linked_regions(tmp_path)
            late = {"late": self.config(tmp_path), **linked}
            regions.configure(late, key_prefix="late-a" + uuid.uuid4().hex)
            assert f(1) == f(1) == 1
            assert calls == [1]
            assert regions.get_manager()["late"].backend == self.backend_name(tmp_path)
            regions.configure({**late, "late": self.config(tmp_path)}, key_prefix="late-b" + uuid.uuid4().hex)
            assert f(1) == 1  # the new manager (new prefix / new location) is used
            assert calls == [1, 1]
        finally:
            regions.configure(None)
        with pytest.raises(regions.RegionError):
            regions.get_manager()
