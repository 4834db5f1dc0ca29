"""The sqlite example backend (``tests/thirdparty/sqlite_backend.py``) under the contract kit, as a
third-party package would run it: the kit on the backend itself, on a synced ``memory`` region and
a ``tiered`` region working through it, and real processes sharing one database file."""

from __future__ import annotations

import contextlib
import itertools
import multiprocessing
import os
import sqlite3
import time
import uuid
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from beaker.cache import clsmap

import regions
from regions.backends.contract import make_entry
from regions.errors import UnstorableValue
from regions.testing import BackendContract

# Imported by the name regions loads it by (not relatively: that would be a second copy of it).
from tests.thirdparty.sqlite_backend import SqliteNamespaceManager, SqliteStore

#: As a package's users would name it (``tests`` is importable from the project's root).
BACKEND = "tests.thirdparty.sqlite_backend:SqliteNamespaceManager"

class TestSqlite(BackendContract):
    local_expiry = True  # rows expire by this process's clock (``expires`` against ``time.time()``)
    #: The name a package would declare as its ``beaker.backends`` entry point.
    beaker_type = "thirdparty.sqlite"
    files = itertools.count()

    @pytest.fixture(autouse=True)
    def _beaker_knows_the_backend(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """A package declares ``[project.entry-points."beaker.backends"]``; this test module
        cannot, so it adds the class to Beaker's registry itself (a private dict: Beaker has no
        public way to register a backend)."""
        monkeypatch.setitem(clsmap._clsmap, self.beaker_type, SqliteNamespaceManager)

    def config(self, tmp_path: Path, **settings: Any) -> dict[str, Any]:
        location = str(tmp_path / f"cache-{next(self.files)}.sqlite3")
        return {"BACKEND": BACKEND, "LOCATION": location, **settings}


class TestSyncedMemoryOverSqlite(BackendContract):
    """``memory`` with ``sync_with`` naming a sqlite region: its log is a ``SqliteLog``."""
    local_expiry = True  # entries expire by this process's clock

    beaker_type = ""

    def linked_regions(self, tmp_path: Path) -> dict[str, Any]:
        return {"shared": {"BACKEND": BACKEND, "LOCATION": str(tmp_path / "shared.sqlite3")}}

    def config(self, tmp_path: Path, **settings: Any) -> dict[str, Any]:
        options = {"sync_with": "shared", **settings.pop("OPTIONS", {})}
        return {"BACKEND": "memory", "OPTIONS": options, **settings}


class TestTieredOverSqlite(TestSyncedMemoryOverSqlite):
    """``tiered`` with ``over`` naming a sqlite region: its shared tier is ``SqliteStore.derive``."""

    def config(self, tmp_path: Path, **settings: Any) -> dict[str, Any]:
        options = {"over": "shared", **settings.pop("OPTIONS", {})}
        return {"BACKEND": "tiered", "OPTIONS": options, **settings}


def test_rows_are_signed_and_checked_before_unpickling(tmp_path: Path) -> None:
    path = tmp_path / "cache.sqlite3"
    manager = regions.CacheManager({"r": {"BACKEND": BACKEND, "LOCATION": str(path)}}, secret="s" * 32)
    try:
        region = manager["r"]
        region.set("k", {"a": 1})
        assert region.get("k") == {"a": 1}
        with contextlib.closing(sqlite3.connect(path)) as db, db:  # anyone who can write the file
            for rowid, data in db.execute("SELECT rowid, data FROM entries").fetchall():
                db.execute("UPDATE entries SET data = ? WHERE rowid = ?", (data[:-1] + b"!", rowid))
        assert region.get("k", "missing") == "missing"
        assert region.stats()["rejected"] == 1
        with pytest.raises(UnstorableValue):
            region.namespace("t").set_entry("k", make_entry(lambda: 0, None))
    finally:
        manager.close()


def price(data: str) -> str:
    """The "database": a file holding the current price."""
    return Path(data).read_text()


def read_then_invalidate(settings: dict[str, Any], region: str, op: str, data: str) -> tuple[str, bool]:
    """In a spawned process: read ``price(data)`` through ``region``, then invalidate it by key
    (``op="invalidate"``) or by tag (``"tags"``). Returns what it read and whether that worked."""
    manager = regions.CacheManager(**settings)
    try:
        cached = manager.region(region, tags=["price"])(price)
        seen = cached(data)
        if op == "invalidate":
            return seen, cached.invalidate(data)
        return seen, manager.invalidate_tags("price")
    finally:
        manager.close()


@pytest.mark.parametrize("op", ["invalidate", "tags"])
@pytest.mark.parametrize("region", ["shared", "local"])
def test_an_invalidation_in_another_process_is_seen_here(tmp_path: Path, region: str, op: str) -> None:
    """``shared``: the sqlite region itself (its rows, its tag versions); ``local``: a synced memory
    region whose invalidations travel through the log in the same file."""
    config: dict[str, Any] = {"shared": {"BACKEND": BACKEND, "LOCATION": str(tmp_path / "cache.sqlite3")}}
    if region == "local":
        config["local"] = {"BACKEND": "memory", "OPTIONS": {"sync_with": "shared", "sync_interval": 0.1}}
    settings: dict[str, Any] = {"config": config, "key_prefix": uuid.uuid4().hex[:8], "secret": "x" * 32}
    data = tmp_path / "price.txt"
    data.write_text("1")
    manager = regions.CacheManager(**settings)
    try:
        cached = manager.region(region, tags=["price"])(price)
        assert cached(str(data)) == "1"
        data.write_text("2")
        assert cached(str(data)) == "1"
        with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
            seen, done = pool.submit(read_then_invalidate, settings, region, op, str(data)).result(60)
        assert seen == ("1" if region == "shared" else "2")  # our row; a local region's own memory
        assert done
        deadline = time.monotonic() + 5
        while cached(str(data)) != "2":
            assert time.monotonic() < deadline, f"the other process's {op} was not seen here in 5 s"
            time.sleep(0.05)
    finally:
        manager.close()


def test_a_forked_child_opens_connections_of_its_own(tmp_path: Path) -> None:
    """``Store.after_fork`` runs in every forked child: the parent's connections are not used there."""
    config = {"r": {"BACKEND": BACKEND, "LOCATION": str(tmp_path / "cache.sqlite3")}}
    manager = regions.CacheManager(config, secret="x" * 32, publish_every=0)  # no thread mid-call at fork
    try:
        region = manager["r"]
        store = region.store
        assert isinstance(store, SqliteStore)
        region.set("parent", 1)
        parent_db = store.db()
        pid = os.fork()
        if pid == 0:  # the child: exit code 0 when it read and wrote on a connection of its own
            code = 1
            try:
                if store.db() is not parent_db and region.get("parent") == 1:
                    region.set("child", 2)
                    code = 0
            finally:
                os._exit(code)
        assert os.waitpid(pid, 0)[1] == 0
        assert region.get("child") == 2
    finally:
        manager.close()
