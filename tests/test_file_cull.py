"""file backend housekeeping on real folders: cull() of expired entries, dead temp files, bounds."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import pytest

import regions

MISSING = object()


def files_in(root: Path) -> list[Path]:
    """Every file of the region's folder but its lock folder and its own figures (``.bookkeeping``:
    the fleet publisher writes them every few seconds, so a test slowed down by a busy machine
    would otherwise count them as left-over entries)."""
    return sorted(
        p for p in root.rglob("*")
        if p.is_file() and not {".locks", ".bookkeeping"} & set(p.relative_to(root).parts)
    )


def entries_in(root: Path) -> list[Path]:
    return [p for p in files_in(root) if p.name.endswith(".entry")]


def wait_for_cull(store: Any, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while (thread := store.culler.thread) is not None:
        thread.join(max(0.0, deadline - time.monotonic()))
        assert time.monotonic() < deadline, "the background cull did not finish"


def make(make_manager: Any, root: Path, **options: Any) -> Any:
    options.setdefault("stale", 0)
    conf = {"BACKEND": "file", "LOCATION": str(root), "TIMEOUT": 1, "OPTIONS": options}
    manager = make_manager({"r": conf})
    return manager["r"]


def write_expired(store: Any, count: int, namespace: str = "expired") -> None:
    ns = store.namespace(namespace)
    long_ago = time.time() - 100
    for i in range(count):
        ns.set_entry(f"k{i}", (long_ago, 1, i))


def test_cull_removes_expired_entries(cache_root, make_manager):
    region = make(make_manager, cache_root, cull_interval=0)
    write_expired(region.store, 2000)
    for i in range(200):
        region.set(("fresh", i), i, timeout=60)
    assert len(files_in(cache_root)) == 2200
    assert region.count() == 200  # only servable entries count

    assert region.store.cull() == 2000
    left = files_in(cache_root)
    assert len(left) == 200, len(left)
    assert all(p.name.endswith(".entry") for p in left)
    assert [region.get(("fresh", i)) for i in range(200)] == list(range(200))
    assert region.store.cull() == 0


def test_writes_start_a_cull_every_cull_interval(cache_root, make_manager):
    from regions.backends.file import FileStore

    write_expired(FileStore("r", str(cache_root), {"cull_interval": 0}), 2000)
    region = make(make_manager, cache_root, cull_interval=1)
    created = time.monotonic()
    store = region.store
    for i in range(20):
        region.set(("fresh", i), i, timeout=60)
    if time.monotonic() - created < 0.9:
        assert store.culler.thread is None, "a cull started before cull_interval"
        assert len(files_in(cache_root)) == 2020

    time.sleep(max(0.0, created + 1.1 - time.monotonic()))
    region.set("due", 1, timeout=60)  # the first write past cull_interval starts a cull
    assert store.culler.thread is not None
    wait_for_cull(store)
    assert len(files_in(cache_root)) == 21
    assert region.get(("fresh", 0)) == 0

    # Another process (here: another store on the folder) skips its cull: this one just culled.
    other = FileStore("r", str(cache_root), {"cull_interval": 60})
    assert other.culler.start(force=False) is None
    assert other.culler.thread is None


def test_expired_entries_beyond_stale_only(cache_root, make_manager):
    region = make(make_manager, cache_root, cull_interval=0, stale=60)
    ns = region.store.namespace("ns")
    now = time.time()
    ns.set_entry("servable", (now - 30, 1, "stale but servable"))
    ns.set_entry("gone", (now - 90, 1, "expired beyond stale"))
    ns.set_entry("forever", (now - 10**6, None, "never expires"))
    assert region.count() == 2
    assert region.store.cull() == 1
    assert ns.get_entry("servable") is not None and ns.get_entry("forever") is not None


def _plant_temp(root: Path, age: float) -> Path:
    folder = root / "somewhere" / "ab"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f".tmp-{age:.0f}-{os.getpid()}"
    path.write_bytes(b"half an entry from a killed writer")
    stamp = time.time() - age
    os.utime(path, (stamp, stamp))
    return path


def test_cull_removes_temp_files_of_killed_writers_only(cache_root, make_manager):
    region = make(make_manager, cache_root, cull_interval=0)
    region.set("k", "v")
    dead = _plant_temp(cache_root, age=3600)
    writing = _plant_temp(cache_root, age=1)  # a writer may still be at work on it
    assert region.store.cull() == 1
    assert not dead.exists() and writing.exists()
    assert region.get("k") == "v"


def test_clear_removes_temp_files_too(cache_root, make_manager):
    region = make(make_manager, cache_root, cull_interval=0)
    region.set("k", "v")
    dead = _plant_temp(cache_root, age=3600)
    region.clear()
    assert not dead.exists()
    assert files_in(cache_root) == []


def test_cull_removes_damaged_entries_and_leaves_other_files(cache_root, make_manager):
    region = make(make_manager, cache_root, cull_interval=0)
    region.set("k", "v")
    (cache_root / "old-namespace" / "aa").mkdir(parents=True)
    (cache_root / "old-namespace" / "aa" / "x.entry").write_bytes(b"\x00garbage")
    (cache_root / "README").write_text("not ours")
    assert region.store.cull() == 1
    assert (cache_root / "README").exists()
    assert region.get("k") == "v"
    assert not (cache_root / "old-namespace").exists(), "emptied folders are removed"


def test_max_entries_keeps_the_newest(cache_root, make_manager):
    region = make(make_manager, cache_root, cull_interval=0, max_entries=100)
    for i in range(300):
        region.set(("k", i), i, timeout=3600)  # none expires however slow the machine
    wait_for_cull(region.store)
    left = len(entries_in(cache_root))
    assert 50 <= left <= 100, left
    assert region.get(("k", 299)) == 299
    assert region.get(("k", 0), MISSING) is MISSING
    assert region.store.cull() == 0


def test_max_size_bounds_the_bytes(cache_root, make_manager):
    region = make(make_manager, cache_root, cull_interval=0, max_size=200_000)
    for i in range(100):
        region.set(("k", i), os.urandom(10_000), timeout=3600)
    wait_for_cull(region.store)
    size = sum(p.stat().st_size for p in entries_in(cache_root))
    assert 100_000 <= size <= 200_000, size
    assert region.get(("k", 99), MISSING) is not MISSING


def test_fsync_option_writes_and_reads(cache_root, make_manager):
    region = make(make_manager, cache_root, cull_interval=0, fsync=True)
    region.set("k", {"v": 1}, timeout=None)
    assert region.get("k") == {"v": 1}
    assert region.stats()["errors"] == 0


@pytest.mark.parametrize(
    ("option", "value"),
    [("max_entries", "100"), ("max_entries", 1.5), ("max_size", -1), ("cull_interval", "often")],
)
def test_cull_options_are_validated(cache_root, option, value):
    with pytest.raises(regions.ConfigurationError) as info:
        regions.CacheManager({"r": {"BACKEND": "file", "LOCATION": cache_root, "OPTIONS": {option: value}}})
    assert info.value.option == f"OPTIONS.{option}"
