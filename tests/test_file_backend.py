"""file backend on real directories: layout, atomic writes, expiry, damaged entries, huge values."""

from __future__ import annotations

import logging
import os
import shutil
import threading
import time
import tracemalloc
from pathlib import Path

import pytest

MISSING = object()


def entry_files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file() and ".locks" not in p.relative_to(root).parts)


@pytest.fixture
def files(cache_root, region_config, make_manager):
    """(manager, root): region "f" (TIMEOUT 300) on root, "short" (TIMEOUT 1, no stale) on root-short."""
    manager = make_manager(
        {
            "f": region_config("file", LOCATION=str(cache_root)),
            "short": region_config("file", LOCATION=short_root(cache_root), TIMEOUT=1, OPTIONS={"stale": 0}),
        }
    )
    return manager, cache_root


def short_root(root: Path) -> Path:
    return root.with_name(root.name + "-short")


def test_one_file_per_key_in_sharded_folders(files):
    manager, root = files
    region = manager["f"]
    for i in range(50):
        region.set(("key", i), i)
    found = entry_files(root)
    assert len(found) == 50
    for i in range(50):
        region.set(("key", i), -i)  # overwriting adds no file
    assert entry_files(root) == found
    assert region.count() == 50

    depths = {len(p.relative_to(root).parts) for p in found}
    assert min(depths) >= 3, f"entries not sharded into sub-folders: {depths}"
    shards = {p.parent for p in found}
    assert len(shards) > 10, f"50 keys fell into only {len(shards)} folders"
    assert max(sum(1 for p in found if p.parent == s) for s in shards) <= 5

    region.delete(("key", 0))
    assert len(entry_files(root)) == 49
    assert region.get(("key", 1)) == -1


def test_entries_persist_for_another_manager(cache_root, region_config, make_manager):
    conf = region_config("file", LOCATION=str(cache_root))
    first = make_manager({"f": conf}, key_prefix="persist")
    second = make_manager({"f": dict(conf)}, key_prefix="persist")
    first["f"].set("k", {"v": 1})
    assert second["f"].get("k") == {"v": 1}
    second["f"].delete("k")
    assert first["f"].get("k", MISSING) is MISSING


def test_no_temporary_files_left(files):
    manager, root = files
    region = manager["f"]
    errors: list = []

    def writer(n):
        try:
            for i in range(30):
                region.set("contended", (n, i, b"x" * 10_000))
                region.set(("own", n, i % 5), i)
        except Exception as exc:
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    names = [p.name for p in entry_files(root)]
    assert len(names) == 1 + 8 * 5, names
    assert region.stats()["errors"] == 0
    value = region.get("contended")
    assert value[1] == 29 and value[2] == b"x" * 10_000

    # A value that cannot be pickled fails half-way through the write: no temp file, old entry intact.
    region.set("k", "old")
    before = entry_files(root)
    region.set("k", lambda: "unpicklable")
    assert entry_files(root) == before
    assert region.get("k", MISSING) in ("old", MISSING)
    assert region.stats()["errors"] == 1


def test_readers_never_see_half_written_entries(files):
    manager, _root = files
    region = manager["f"]
    size = 2 * 1024 * 1024
    values = [bytes([c]) * size for c in b"ab"]
    region.set("big", values[0])
    stop = threading.Event()
    bad: list = []
    reads = [0]

    def reader():
        while not stop.is_set():
            got = region.get("big", MISSING)
            reads[0] += 1
            if got is MISSING or got not in values:
                bad.append(got if got is MISSING else (len(got), got[:1], got[-1:]))

    readers = [threading.Thread(target=reader) for _ in range(3)]
    for t in readers:
        t.start()
    for i in range(40):
        region.set("big", values[i % 2])
    stop.set()
    for t in readers:
        t.join()
    assert bad == []
    assert reads[0] > 10
    assert region.stats()["errors"] == 0


def test_expired_entries_are_misses_and_removed(fake_clock, files):
    manager, root = files
    region = manager["short"]
    region.set("k", "v")
    region.set("forever", "v", timeout=None)
    assert region.get("k") == "v"
    assert len(entry_files(short_root(root))) == 2
    fake_clock.advance(1.2)  # past TIMEOUT 1: entries are judged by this process's clock
    assert region.get("k", MISSING) is MISSING
    assert region.get("forever") == "v"
    assert len(entry_files(short_root(root))) == 1  # the expired file was dropped on read


def test_shared_folder_is_rejected(cache_root, region_config):
    import regions

    with pytest.raises(regions.ConfigurationError) as info:
        regions.CacheManager({"a": region_config("file", LOCATION=cache_root),
                              "b": region_config("file", LOCATION=str(cache_root))})
    assert info.value.option == "LOCATION"


def test_nested_folder_is_rejected_or_spared_by_clear(cache_root, region_config, make_manager):
    """A region whose folder is inside another's must not lose its entries to the outer clear()."""
    import regions

    settings = {"outer": region_config("file", LOCATION=cache_root),
                "inner": region_config("file", LOCATION=cache_root / "inner")}
    try:
        manager = make_manager(settings)
    except regions.ConfigurationError:
        return  # refusing the configuration is fine too
    manager["inner"].set("k", "inner value")
    manager["outer"].set("k", "outer value")
    manager["outer"].clear()
    assert manager["outer"].get("k", MISSING) is MISSING
    assert manager["inner"].get("k") == "inner value"


def _only_entry(root: Path) -> Path:
    found = entry_files(root)
    assert len(found) == 1, found
    return found[0]


DAMAGE = {
    "garbage": lambda p: p.write_bytes(b"\x00garbage\xff" * 100),
    "empty": lambda p: p.write_bytes(b""),
    "truncated": lambda p: p.write_bytes(p.read_bytes()[: len(p.read_bytes()) // 2]),
    "last-byte-cut": lambda p: p.write_bytes(p.read_bytes()[:-1]),
    "directory": lambda p: (p.unlink(), p.mkdir()),
    "text": lambda p: p.write_text("not a pickle at all"),
}


@pytest.mark.parametrize("damage", list(DAMAGE))
def test_damaged_entry_is_a_miss_and_rejected(files, damage):
    manager, root = files
    region = manager["f"]
    calls = []

    @manager.region("f")
    def compute(x):
        calls.append(x)
        return {"x": x, "payload": "p" * 5000}

    assert compute(1)["x"] == 1
    path = _only_entry(root)
    DAMAGE[damage](path)
    region.reset_stats()

    result = compute(1)  # must recompute, never return garbage
    assert result == {"x": 1, "payload": "p" * 5000}
    assert calls == [1, 1]
    stats = region.stats()
    if damage == "directory":
        assert stats["errors"] >= 1, stats
    else:  # never unpickled: its tag does not match (or it has none)
        assert stats["rejected"] >= 1 and stats["errors"] == 0, stats
    if damage != "directory":
        assert compute(1) == result  # the entry was rewritten and is served again
        assert calls == [1, 1]

    region.set("direct", "value")
    direct = [p for p in entry_files(root) if p != path]
    assert len(direct) == 1
    DAMAGE[damage](direct[0])
    assert region.get("direct", MISSING) is MISSING


def test_entries_of_the_previous_storage_version_are_misses_then_culled(
    cache_root, region_config, make_manager, caplog
):
    """An entry as the version before wrote it (``b"RF1"``, in a namespace folder without a version
    mark) is a miss, neither rejected nor logged, is not counted, and a cull removes it."""
    from regions.backends.file import entry_format

    conf = region_config("file", LOCATION=str(cache_root), OPTIONS={"cull_interval": 0})
    manager = make_manager({"f": conf})
    region = manager["f"]
    calls = []

    @manager.region("f")
    def compute(x):
        calls.append(x)
        return ("computed", x)

    compute(1)
    path = _only_entry(cache_root)
    folder = cache_root / path.relative_to(cache_root).parts[0]
    assert folder.name.endswith(f".v{entry_format.VERSION}"), folder.name
    old = folder.with_name(folder.name.removesuffix(f".v{entry_format.VERSION}"))
    folder.rename(old)
    old_path = old / path.relative_to(folder)
    old_path.write_bytes(b"RF1" + old_path.read_bytes()[len(entry_format.MAGIC) :])
    region.reset_stats()

    with caplog.at_level(logging.DEBUG, logger="regions"):
        assert compute(1) == ("computed", 1)
    assert calls == [1, 1]
    stats = region.stats()
    assert stats["rejected"] == 0 and stats["errors"] == 0, stats
    assert caplog.records == []
    assert region.count() == 1  # the new entry only
    assert region.store.cull() == 1
    assert not old_path.exists()
    assert compute(1) == ("computed", 1) and calls == [1, 1]


def test_foreign_entry_file_is_never_served_as_another_key(files):
    manager, root = files
    region = manager["f"]
    region.set("a", "value of a")
    path_a = _only_entry(root)
    region.set("b", "value of b")
    path_b = next(p for p in entry_files(root) if p != path_a)
    shutil.copyfile(path_a, path_b)  # b's file now holds a's entry
    assert region.get("b", MISSING) is MISSING
    assert region.get("a") == "value of a"


HUGE = 200 * 1024 * 1024


def test_huge_value_round_trips_without_a_second_copy(files):
    manager, _root = files
    region = manager["f"]
    value = os.urandom(1024 * 1024) * (HUGE // (1024 * 1024))

    start = time.monotonic()
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        region.set("huge", value)
        set_peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.reset_peak()
        got = region.get("huge")
        get_peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    elapsed = time.monotonic() - start

    assert region.stats()["errors"] == 0
    assert got == value
    assert set_peak < 0.3 * HUGE, f"set() allocated {set_peak / HUGE:.2f}x the value size"
    assert get_peak < 1.3 * HUGE, f"get() peaked at {get_peak / HUGE:.2f}x the value size"
    assert elapsed < 20, f"200 MB round trip took {elapsed:.1f}s"


# namespace folders and entry identity --------------------------------------------------------
TRICKY_NAMESPACES = [
    "shop/eu:v1:m.f", "shop_eu:v1:m.f", "shop:eu:v1:m.f", "shop~eu:v1:m.f", "shop eu:v1:m.f",
    "a" * 300, "a" * 300 + "b", "é", "e", "", ".", "..", ".locks", "x/../y", "x/./y", "\x00", "~",
]


def test_distinct_namespaces_never_share_a_folder(cache_root):
    from regions.backends.file import FileStore

    store = FileStore("f", str(cache_root), {})
    managers = [store.namespace(ns) for ns in TRICKY_NAMESPACES]
    folders = [m.folder for m in managers]
    assert len(set(folders)) == len(TRICKY_NAMESPACES), folders
    for folder in folders:
        assert folder.parent == cache_root, folder
        assert not folder.name.startswith(".") and len(folder.name.encode()) <= 120, folder.name
    for i, m in enumerate(managers):
        m.set_entry("k", (time.time(), None, i))
    assert [m.get_entry("k")[2] for m in managers] == list(range(len(managers)))
    assert store.namespace("shop/eu:v1:m.f").folder == folders[0], "folder names are stable"


def test_prefixes_with_a_slash(cache_root, region_config, make_manager):
    """Two applications on one folder whose key prefixes differ by "/" vs "_" keep their values."""
    conf = region_config("file", LOCATION=str(cache_root))
    first = make_manager({"r": conf}, key_prefix="shop/eu")
    second = make_manager({"r": dict(conf)}, key_prefix="shop_eu")

    def price(item):
        return f"{app} price of {item}"

    app = "first"
    first_price = first.region("r")(price)
    assert first_price("book") == "first price of book"
    app = "second"
    second_price = second.region("r")(price)
    assert second_price("book") == "second price of book"
    assert first_price("book") == "first price of book"


def test_an_entry_copied_to_another_functions_path_is_a_miss(files):
    manager, root = files
    calls = []

    @manager.region("f")
    def first(x):
        calls.append(("first", x))
        return f"first({x})"

    @manager.region("f")
    def second(x):
        calls.append(("second", x))
        return f"second({x})"

    assert first(1) == "first(1)"
    target = Path(second.cache_key(1))
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(first.cache_key(1), target)  # same argument text, another function's folder
    assert second(1) == "second(1)"
    assert calls == [("first", 1), ("second", 1)]
    assert first(1) == "first(1)" and len(calls) == 2
