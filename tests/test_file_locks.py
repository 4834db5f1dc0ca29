"""file backend creation locks: one lock per key across threads and processes, on real folders.

A computation holds the lock of its own key only: callers of other keys, in this process or in
another one, never wait for it.
"""

from __future__ import annotations

import multiprocessing
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

import regions
from regions.backends.file import FileStore

SPAWN = multiprocessing.get_context("spawn")
#: Set in a child process: the slow computation signals it when it starts, and holds key "A"
#: until the test releases it (the test has asked for another key meanwhile).
_STARTED: Any = None
_RELEASE: Any = None


def _old_stripe(path: str) -> int:
    """The lock file a key used under the former layout (64 files per region, by entry digest).

    Tests pick keys that shared a lock file there: the layout where an unrelated key had to wait.
    """
    return int(os.path.basename(path)[:4], 16) % 64


def _store(location: Path, **options: Any) -> FileStore:
    return FileStore("r", str(location), options)


# lock level ------------------------------------------------------------------------------------
def _hold_lock(location: str, namespace: str, key: str, held: Any, release: Any) -> None:
    lock = _store(Path(location)).namespace(namespace).shared_lock(key)
    assert lock is not None and lock.acquire(5)
    held.set()
    release.wait(30)
    lock.release()


def test_lock_of_one_key_excludes_another_process_and_no_other_key(cache_root):
    held, release = SPAWN.Event(), SPAWN.Event()
    child = SPAWN.Process(target=_hold_lock, args=(str(cache_root), "ns", "A", held, release))
    child.start()
    try:
        assert held.wait(30), "the child did not take the lock"
        ns = _store(cache_root).namespace("ns")

        other = ns.shared_lock("B")
        assert other.acquire(0), "key B waited for key A"
        other.release()
        assert ns.store.namespace("other ns").shared_lock("A").acquire(0), "same key, other namespace"

        lock = ns.shared_lock("A")
        assert lock.acquire(0) is False
        start = time.monotonic()
        assert lock.acquire(0.5) is False
        waited = time.monotonic() - start
        assert 0.45 <= waited < 2.0, f"timed out after {waited:.2f}s, not 0.5s"

        release.set()
        start = time.monotonic()
        assert lock.acquire(10), "never got the lock the child released"
        assert time.monotonic() - start < 2.0
        lock.release()
    finally:
        release.set()
        child.join(30)
    assert child.exitcode == 0


def test_two_stores_on_one_folder_in_one_process_exclude_each_other(cache_root):
    """Record locks belong to a process: the store itself keeps two holders in one process apart."""
    first = _store(cache_root).namespace("ns").shared_lock("A")
    second = _store(Path(os.path.relpath(cache_root))).namespace("ns").shared_lock("A")
    assert first.acquire(0)
    try:
        assert second.acquire(0) is False
        start = time.monotonic()
        assert second.acquire(0.3) is False
        assert time.monotonic() - start >= 0.25
        released = threading.Timer(0.2, first.release)
        released.start()
        assert second.acquire(5)
        released.join()
    finally:
        second.release()
    assert first.acquire(0)
    first.release()


def test_locks_never_pile_up_files(cache_root):
    ns = _store(cache_root).namespace("ns")
    for i in range(500):
        lock = ns.shared_lock(("k", i))
        assert lock.acquire(0)
        lock.release()
    locks = [p for p in cache_root.rglob("*") if p.is_file()]
    assert len(locks) == 1, locks


def test_lock_works_again_in_a_forked_child(cache_root):
    """A child forked while the parent holds a lock takes other keys, and not the parent's key."""
    if not hasattr(os, "fork"):
        pytest.skip("no fork")
    ns = _store(cache_root).namespace("ns")
    lock = ns.shared_lock("A")
    assert lock.acquire(0)
    try:
        ctx = multiprocessing.get_context("fork")
        queue = ctx.Queue()
        child = ctx.Process(target=_forked_child, args=(ns, queue))
        child.start()
        got = queue.get(timeout=30)
        child.join(30)
    finally:
        lock.release()
    assert got == (True, False)


def _forked_child(ns: Any, queue: Any) -> None:
    other, parents = ns.shared_lock("B"), ns.shared_lock("A")
    queue.put((other.acquire(0), parents.acquire(0.2)))


# through a region ------------------------------------------------------------------------------
def slow_or_quick(x: str) -> str:
    """Key "A" computes until the test releases it (at most 30 s); every other key returns at once."""
    if x == "A":
        if _STARTED is not None:
            _STARTED.set()
        if _RELEASE is not None:
            _RELEASE.wait(30)
    return f"value {x}"


def _unrelated_key(fn: Any, key: str = "A") -> str:
    stripe = _old_stripe(fn.cache_key(key))
    return next(f"B{i}" for i in range(10_000) if _old_stripe(fn.cache_key(f"B{i}")) == stripe)


def _config(location: Path) -> dict[str, Any]:
    return {"r": {"BACKEND": "file", "LOCATION": str(location), "OPTIONS": {"lock_timeout": 10}}}


def test_a_long_computation_does_not_block_another_key_in_another_thread(cache_root, make_manager):
    manager = make_manager(_config(cache_root))
    started, release = threading.Event(), threading.Event()

    @manager.region("r")
    def compute(x):
        if x == "A":
            started.set()
            release.wait(30)  # key "A" computes until the other key was answered (or not)
        return f"value {x}"

    other = _unrelated_key(compute)
    slow = threading.Thread(target=compute, args=("A",))
    slow.start()
    try:
        assert started.wait(10)
        start = time.monotonic()
        assert compute(other) == f"value {other}"
        waited = time.monotonic() - start
    finally:
        release.set()
        slow.join(30)
    assert waited < 1.0, f"key {other!r} waited {waited:.2f}s for key 'A'"
    assert compute("A") == "value A"


def _compute_in_child(location: str, prefix: str, started: Any, release: Any) -> None:
    global _STARTED, _RELEASE
    _STARTED, _RELEASE = started, release
    manager = regions.CacheManager(_config(Path(location)), key_prefix=prefix)
    try:
        assert manager.region("r")(slow_or_quick)("A") == "value A"
    finally:
        manager.close()


def test_a_long_computation_does_not_block_another_key_in_another_process(cache_root, make_manager):
    manager = make_manager(_config(cache_root), key_prefix="procs")
    compute = manager.region("r")(slow_or_quick)
    other = _unrelated_key(compute)
    started, release = SPAWN.Event(), SPAWN.Event()
    child = SPAWN.Process(target=_compute_in_child, args=(str(cache_root), "procs", started, release))
    child.start()
    try:
        assert started.wait(30), "the child never started computing"
        start = time.monotonic()
        assert compute(other) == f"value {other}"
        waited = time.monotonic() - start
    finally:
        release.set()
        child.join(30)
    assert child.exitcode == 0
    assert waited < 1.0, f"key {other!r} waited {waited:.2f}s for another process's key 'A'"
    assert compute("A") == "value A"  # the child's value, read from the folder


def test_cached_function_fanning_out_to_its_region_through_threads(cache_root, make_manager):
    """A cached function computing 50 cached sub-results on a thread pool finishes without waiting."""
    manager = make_manager(
        {"r": {"BACKEND": "file", "LOCATION": str(cache_root), "OPTIONS": {"lock_timeout": 5}}}
    )
    calls: list[Any] = []
    lock = threading.Lock()

    @manager.region("r")
    def part(i):
        with lock:
            calls.append(i)
        return i * i

    @manager.region("r")
    def total(n):
        with ThreadPoolExecutor(8) as pool:
            return sum(pool.map(part, range(50)))

    # An argument whose entry shared a lock file with one of the parts under the former layout.
    stripes = {_old_stripe(part.cache_key(i)) for i in range(50)}
    n = next(n for n in range(10_000) if _old_stripe(total.cache_key(n)) in stripes)
    start = time.monotonic()
    assert total(n) == sum(i * i for i in range(50))
    elapsed = time.monotonic() - start
    assert elapsed < 2.5, f"fan-out stalled {elapsed:.1f}s (lock_timeout is 5 s)"
    assert sorted(calls) == list(range(50)), "each part computed once"
    assert total(n) == sum(i * i for i in range(50)) and len(calls) == 50


def test_lock_offsets_spread_over_keys_and_namespaces(cache_root):
    """60-bit offsets: distinct for distinct (namespace, key) pairs in practice."""
    store = _store(cache_root)
    offsets = {
        store.namespace(ns).shared_lock(k).offset for ns in ("a", "b", "a:b") for k in map(str, range(300))
    }
    assert len(offsets) == 900
    assert max(offsets) < 2**60
