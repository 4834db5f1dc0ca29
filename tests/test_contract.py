"""One contract, every backend: :class:`regions.testing.BackendContract` once per built-in backend.

Each test runs against the real thing: a memcached server, folders under ``tmp_path``, the process's
memory, and request regions inside ``regions.request_scope()``.
"""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import pytest

import regions
from regions.testing import BackendContract


class TestMemcached(BackendContract):
    @pytest.fixture(autouse=True)
    def _server(self, memcached_server: str) -> None:
        self.address = memcached_server

    def config(self, tmp_path: Path, **settings: Any) -> dict[str, Any]:
        return {"BACKEND": "memcached", "LOCATION": self.address, **settings}


class TestFile(BackendContract):
    local_expiry = True  # entries expire by this process's clock
    folders = itertools.count()

    def config(self, tmp_path: Path, **settings: Any) -> dict[str, Any]:
        return {"BACKEND": "file", "LOCATION": str(tmp_path / f"files-{next(self.folders)}"), **settings}

    def beaker_options(self, tmp_path: Path) -> dict[str, Any]:
        return {"data_dir": str(tmp_path / "beaker")}


class TestMemory(BackendContract):
    local_expiry = True  # entries expire by this process's clock
    def config(self, tmp_path: Path, **settings: Any) -> dict[str, Any]:
        return {"BACKEND": "memory", **settings}


class TestRequest(BackendContract):
    local_expiry = True  # entries expire by this process's clock
    persistent = False
    def config(self, tmp_path: Path, **settings: Any) -> dict[str, Any]:
        return {"BACKEND": "request", **settings}

    def scope(self) -> regions.request_scope:
        return regions.request_scope()


def test_request_regions_do_not_cache_outside_a_scope(make_manager: Any) -> None:
    """The one thing the request backend does differently: no scope, no caching (and no error)."""
    manager = make_manager({"r": {"BACKEND": "request"}})
    calls = []

    @manager.region("r")
    def f(x: int) -> int:
        calls.append(x)
        return x

    assert manager["r"].active is False
    assert f(1) == f(1) == 1
    assert calls == [1, 1]
    with regions.request_scope():
        assert manager["r"].active is True
        assert f(1) == f(1) == 1
    assert calls == [1, 1, 1]



class TestSyncedMemory(BackendContract):
    """``memory`` with ``sync_with``: the contract holds with the invalidation log in the way."""
    local_expiry = True  # entries expire by this process's clock

    beaker_type = ""

    @pytest.fixture(autouse=True)
    def _server(self, memcached_server: str) -> None:
        self.address = memcached_server

    def linked_regions(self, tmp_path: Path) -> dict[str, Any]:
        return {"shared": {"BACKEND": "memcached", "LOCATION": self.address}}

    def config(self, tmp_path: Path, **settings: Any) -> dict[str, Any]:
        options = {"sync_with": "shared", **settings.pop("OPTIONS", {})}
        return {"BACKEND": "memory", "OPTIONS": options, **settings}


class TestTieredOverMemcached(TestSyncedMemory):
    local_expiry = False  # its shared tier is a server, which ages the entries
    def config(self, tmp_path: Path, **settings: Any) -> dict[str, Any]:
        options = {"over": "shared", **settings.pop("OPTIONS", {})}
        return {"BACKEND": "tiered", "OPTIONS": options, **settings}


class TestTieredOverFile(BackendContract):
    local_expiry = True  # entries expire by this process's clock
    beaker_type = ""

    def linked_regions(self, tmp_path: Path) -> dict[str, Any]:
        return {"shared": {"BACKEND": "file", "LOCATION": str(tmp_path / "shared")}}

    def config(self, tmp_path: Path, **settings: Any) -> dict[str, Any]:
        options = {"over": "shared", **settings.pop("OPTIONS", {})}
        return {"BACKEND": "tiered", "OPTIONS": options, **settings}


class TestRedis(BackendContract):
    beaker_type = "regions.redis"

    @pytest.fixture(autouse=True)
    def _server(self, redis_server: str) -> None:
        self.url = redis_server

    def config(self, tmp_path: Path, **settings: Any) -> dict[str, Any]:
        return {"BACKEND": "redis", "LOCATION": self.url, **settings}

    def beaker_options(self, tmp_path: Path) -> dict[str, Any]:
        return {"url": self.url}


class TestSyncedOverRedis(TestRedis):
    """``memory`` with ``sync_with`` a Redis region: the log is a Redis stream."""
    local_expiry = True  # entries expire by this process's clock

    beaker_type = ""

    def linked_regions(self, tmp_path: Path) -> dict[str, Any]:
        return {"shared": {"BACKEND": "redis", "LOCATION": self.url}}

    def config(self, tmp_path: Path, **settings: Any) -> dict[str, Any]:
        options = {"sync_with": "shared", **settings.pop("OPTIONS", {})}
        return {"BACKEND": "memory", "OPTIONS": options, **settings}


class TestTieredOverRedis(TestSyncedOverRedis):
    local_expiry = False  # its shared tier is a server, which ages the entries
    def config(self, tmp_path: Path, **settings: Any) -> dict[str, Any]:
        options = {"over": "shared", **settings.pop("OPTIONS", {})}
        return {"BACKEND": "tiered", "OPTIONS": options, **settings}
