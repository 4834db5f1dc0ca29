"""Beaker's NamespaceManager contract, through Beaker's own objects."""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import pytest
from beaker.container import Value
from beaker.middleware import CacheMiddleware, SessionMiddleware

from .base import (
    CallCounter,
    ContractBase,
    WsgiClient,
    _cache_counter_app,
    _run_threads,
    _session_counter_app,
)
from .clock import ExpiryClock


class BeakerContract(ContractBase):
    """Beaker's NamespaceManager contract, through Beaker's own objects."""

    # ---------------------------------------------------------------------------------------
    # Beaker's NamespaceManager contract, through Beaker's own objects

    def test_beaker_namespace_manager_stores_values_as_is(self, clock: ExpiryClock, tmp_path: Path) -> None:
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
        clock.sleep(1.1)
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

    def test_beaker_cache_createfunc_and_expiry(
        self, clock: ExpiryClock, tmp_path: Path, counter: CallCounter
    ) -> None:
        cache = self.beaker_cache(tmp_path)
        assert cache.get("k", createfunc=lambda: ["made", counter()]) == ["made", 1]
        assert cache.get("k", createfunc=lambda: ["made", counter()]) == ["made", 1]
        assert cache.get_value("k") == ["made", 1]  # stored: readable without createfunc
        assert cache.get("short", createfunc=counter, expiretime=1) == 2
        assert cache.get("short", createfunc=counter, expiretime=1) == 2
        expiring = self.beaker_cache(tmp_path, expire=1)
        expiring.put("k", "soon gone")
        assert expiring.get_value("k") == "soon gone"
        clock.sleep(1.1)
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
