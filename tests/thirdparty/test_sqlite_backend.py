"""The sqlite example backend (``tests/thirdparty/sqlite_backend.py``) under the contract kit, as a
third-party package would run it: the kit on the backend itself, on a synced ``memory`` region and
a ``tiered`` region working through it, and real processes sharing one database file."""

from __future__ import annotations

import itertools
import multiprocessing
import time
import uuid
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from beaker.cache import clsmap

import regions
from regions.testing import BackendContract
from tests.thirdparty.sqlite_backend import SqliteNamespaceManager

#: As a package's users would name it (``tests`` is importable from the project's root).
BACKEND = "tests.thirdparty.sqlite_backend:SqliteNamespaceManager"


class TestSqlite(BackendContract):
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
        return {"BACKEND": BACKEND, "LOCATION": str(tmp_path / f"cache-{next(self.files)}.sqlite3"), **settings}

    def beaker_options(self, tmp_path: Path) -> dict[str, Any]:
        return {"url": str(tmp_path / "beaker.sqlite3")}  # one file per test: caches share it
