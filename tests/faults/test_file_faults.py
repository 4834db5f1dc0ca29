"""file backend faults on real folders: a full disk (a small tmpfs) and a read-only folder.

Under each fault a call returns the function's own result and raises nothing; failures are counted
in ``stats()["errors"]`` and logged a few lines at most; no temporary file is left behind; entries
written before the fault stay complete and are served; caching resumes once space is freed.

The full disk is a tmpfs mounted for the test (limited in bytes, or in inodes). The read-only
folder is a read-only bind mount (root ignores permission bits), or, when not root, folders of mode
0o555. A test that cannot mount is skipped, saying why.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from regions.backends.file import entry_format
from regions.signing import RejectedEntry, Signer

#: Bytes of each cached value: a 256 KiB tmpfs holds a handful of them.
VALUE_SIZE = 40_000
SECRET = "file-faults-test-secret"
SIGNER = Signer(SECRET)
#: Files the lock folder may hold (the file backend's locks and cull).
LOCK_FOLDER_FILES = {"keys.lock", "culled"}


def value_of(i: int, generation: int = 0) -> tuple[int, int, bytes]:
    """What the cached functions return: the payload repeats one byte taken from ``i`` and ``generation``."""
    return (i, generation, bytes([(i * 7 + generation) % 251]) * VALUE_SIZE)


def complete(value: Any) -> bool:
    """Whether ``value`` is a whole :func:`value_of` result (a truncated one is not)."""
    return (
        isinstance(value, tuple)
        and len(value) == 3
        and isinstance(value[0], int)
        and value == value_of(value[0], value[1])
    )


# mounts ------------------------------------------------------------------------------------------
def _mount(*args: str) -> None:
    if shutil.which("mount") is None:
        pytest.skip("no `mount` command on this host")
    done = subprocess.run(["mount", *args], capture_output=True, text=True, timeout=30)
    if done.returncode != 0:
        why = done.stderr.strip()
        pytest.skip(f"cannot `mount {' '.join(args)}` here (needs root or CAP_SYS_ADMIN): {why}")


def _unmount(path: Path) -> None:
    # Lazy: this process keeps a region's lock file open for its lifetime (file/locks.py), so a plain
    # umount would find the mount busy. -l detaches it now; the kernel frees it once that file closes.
    subprocess.run(["umount", "-l", str(path)], capture_output=True, timeout=30, check=True)


@contextlib.contextmanager
def tmpfs(path: Path, options: str) -> Iterator[Path]:
    """A tmpfs mounted at ``path`` with ``options`` (``size=256k``, ``nr_inodes=40``...)."""
    path.mkdir()
    _mount("-t", "tmpfs", "-o", f"{options},mode=0755", "tmpfs", str(path))
    try:
        assert os.path.ismount(path)
        yield path
    finally:
        _unmount(path)


@contextlib.contextmanager
def read_only(folder: Path) -> Iterator[Path]:
    """``folder`` made read-only in place, as a remount would do under a running process: a
    read-only bind mount of it over itself when root (root ignores permission bits), else every
    folder's mode set to 0o555 (restored afterwards). Regions are configured before: configuration
    rejects a LOCATION it cannot write."""
    if os.geteuid() != 0:
        folders = [folder, *(p for p in folder.rglob("*") if p.is_dir())]
        modes = {p: p.stat().st_mode & 0o7777 for p in folders}
        for each in folders:
            each.chmod(0o555)
        try:
            yield _checked_read_only(folder)
        finally:
            for each, mode in modes.items():
                each.chmod(mode)
        return
    _mount("--bind", str(folder), str(folder))
    try:
        _mount("-o", "remount,bind,ro", str(folder))
        yield _checked_read_only(folder)
    finally:
        _unmount(folder)


def _checked_read_only(folder: Path) -> Path:
    probe = folder / ".probe"
    try:
        probe.touch()
    except OSError:
        return folder
    probe.unlink()
    pytest.skip(f"{folder} is still writable: cannot make a read-only folder here")


# what is on disk ---------------------------------------------------------------------------------
def stray_files(root: Path) -> list[Path]:
    """Files under ``root`` that are neither entries nor the lock folder's own: temporary files."""
    stray = []
    for path in root.rglob("*"):
        if path.is_dir():
            continue
        parts = path.relative_to(root).parts
        expected = parts[-1] in LOCK_FOLDER_FILES if parts[0] == ".locks" else parts[-1].endswith(".entry")
        if not expected:
            stray.append(path)
    return stray


def stored_values(root: Path) -> dict[int, tuple[int, int, bytes]]:
    """Every entry file's :func:`value_of` value by its ``i``; asserts each file is one whole entry
    (its tags match: a truncated or half-written file would be rejected)."""
    found = {}
    for path in root.rglob("*.entry"):
        with open(path, "rb") as f:
            data = entry_format.contents(f)
        try:
            header = entry_format.header(data, SIGNER)
            value = entry_format.value(data, header, SIGNER)
        except RejectedEntry as exc:
            raise AssertionError(f"{path}: not one whole entry ({exc})") from exc
        if complete(value):
            found[value[0]] = value
        else:
            assert not isinstance(value, tuple), f"{path}: a truncated or wrong value"
    return found


def free_bytes(root: Path) -> int:
    st = os.statvfs(root)
    return st.f_bavail * st.f_frsize


def log_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name.startswith("regions")]


class Counted:
    """A function returning :func:`value_of` that records each computation."""

    def __init__(self) -> None:
        self.computed: list[int] = []
        self.generation = 0
        self.mutex = threading.Lock()

    def __call__(self, i: int) -> tuple[int, int, bytes]:
        with self.mutex:
            self.computed.append(i)
        return value_of(i, self.generation)


def _file_region(make_manager: Callable[..., Any], location: Path, **options: Any) -> Any:
    options.setdefault("lock_timeout", 5)
    return make_manager({"r": {"BACKEND": "file", "LOCATION": str(location), "TIMEOUT": 300,
                               "OPTIONS": options}}, key_prefix="faults", secret=SECRET)


# a full disk -------------------------------------------------------------------------------------
FULL_DISKS = {
    "bytes": ("size=256k", {}),
    "bytes-fsync": ("size=256k", {"fsync": True}),
    "inodes": ("size=16m,nr_inodes=24", {}),
}
CALLS = 30


@pytest.mark.parametrize("disk", list(FULL_DISKS))
def test_full_disk_returns_results_counts_errors_and_leaves_no_temp_files(disk, tmp_path, make_manager,
                                                                          caplog):
    mount_options, options = FULL_DISKS[disk]
    with tmpfs(tmp_path / "small", mount_options) as root:
        manager = _file_region(make_manager, root, **options)
        region = manager["r"]
        fn = Counted()

        @manager.region("r")
        def f(i: int) -> Any:
            return fn(i)

        caplog.set_level(logging.WARNING, logger="regions")
        results = [f(i) for i in range(CALLS)]  # raises nothing
        assert results == [value_of(i) for i in range(CALLS)]
        stored = stored_values(root)
        assert 0 < len(stored) < CALLS, f"the disk did not fill: {len(stored)} of {CALLS} values stored"
        stats = region.stats()
        assert stats["sets"] == len(stored)
        assert stats["errors"] >= CALLS - len(stored), stats
        assert stray_files(root) == []
        assert len(log_lines(caplog)) <= 3, log_lines(caplog)

        # Entries written before the disk filled are whole and served; the others are computed again.
        fn.computed.clear()
        assert [f(i) for i in range(CALLS)] == [value_of(i) for i in range(CALLS)]
        assert sorted(fn.computed) == sorted(set(range(CALLS)) - set(stored))
        region.set("direct", value_of(999))  # raises nothing either
        assert region.get("direct") in (None, value_of(999))
        assert stray_files(root) == []

        # Space freed: caching works again.
        region.clear()
        assert stored_values(root) == {} and stray_files(root) == []
        fn.computed.clear()
        assert f(500) == value_of(500) and f(500) == value_of(500)
        assert fn.computed == [500], "not cached after space was freed"
        assert stored_values(root) == {500: value_of(500)}


def test_full_disk_under_threads(tmp_path, make_manager):
    with tmpfs(tmp_path / "small", "size=256k") as root:
        manager = _file_region(make_manager, root)
        fn = Counted()

        @manager.region("r")
        def f(i: int) -> Any:
            return fn(i)

        wrong: list[Any] = []
        raised: list[BaseException] = []

        def caller(n: int) -> None:
            for step in range(40):
                i = (n * 13 + step) % 24
                try:
                    if f(i) != value_of(i):
                        wrong.append(i)
                except BaseException as exc:  # noqa: BLE001 - any exception reaching a caller fails
                    raised.append(exc)

        threads = [threading.Thread(target=caller, args=(n,)) for n in range(6)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        assert not any(t.is_alive() for t in threads)
        assert raised == [] and wrong == []
        assert stray_files(root) == []
        stored = stored_values(root)
        assert 0 < len(stored) < 24
        assert manager["r"].stats()["errors"] > 0


def _fill(region: Any, root: Path) -> None:
    """Write filler values until a write fails (the disk is full)."""
    for n in range(100):
        errors = region.stats()["errors"]
        region.set(("filler", n), value_of(10_000 + n))
        if region.stats()["errors"] > errors:
            return
    raise AssertionError(f"the disk never filled ({free_bytes(root)} bytes free)")


def test_a_refresh_that_cannot_be_stored_on_a_full_disk_leaves_no_old_value(tmp_path, make_manager):
    """The refreshed value cannot be written: the one it replaces must not be served afterwards."""
    with tmpfs(tmp_path / "small", "size=256k") as root:
        manager = _file_region(make_manager, root)
        region = manager["r"]
        fn = Counted()

        @manager.region("r")
        def f(i: int) -> Any:
            return fn(i)

        assert f(1) == value_of(1)
        _fill(region, root)
        fn.generation = 1
        assert f.refresh(1) == value_of(1, 1)
        assert f(1) == value_of(1, 1), "a refresh that could not be stored left the old value served"
        assert stray_files(root) == []


# a read-only folder ------------------------------------------------------------------------------
def test_read_only_folder(tmp_path, make_manager, caplog):
    source = tmp_path / "cache"
    source.mkdir()
    fn, short = Counted(), Counted()

    def compute(i: int) -> Any:
        return fn(i)

    def compute_short(i: int) -> Any:
        return short(i)

    manager = _file_region(make_manager, source, stale=0)
    region = manager["r"]
    f = manager.region("r")(compute)
    g = manager.region("r", timeout=0.01)(compute_short)
    for i in range(10):  # refresh stores without taking a lock: the lock file is not made yet
        f.refresh(i)
        g.refresh(100 + i)
    region.set("x", 1)
    time.sleep(0.05)  # the short entries expire
    assert sorted(stored_values(source)) == [*range(10), *range(100, 110)]

    with read_only(source):
        caplog.set_level(logging.WARNING, logger="regions")
        fn.computed.clear()

        for n in range(200):
            i = n % 20
            assert f(i) == value_of(i)
        assert sorted(set(fn.computed)) == list(range(10, 20)), "stored entries not served"
        assert len(fn.computed) == 100
        assert region.stats()["errors"] >= 100, region.stats()
        assert len(log_lines(caplog)) <= 3, log_lines(caplog)

        # An expired entry that cannot be removed is a miss, not a failed read.
        region.reset_stats()
        assert g(100) == value_of(100)
        expired_errors = region.stats()["errors"]
        region.reset_stats()
        assert g(200) == value_of(200)
        assert expired_errors == region.stats()["errors"], "reading an expired entry counted as a failure"

        # Invalidations raise nothing, and are not silent.
        invalidations = (lambda: f.invalidate(0), f.invalidate_all, region.clear, lambda: region.delete("x"))
        for invalidation in invalidations:
            errors = region.stats()["errors"]
            assert invalidation() in (None, True, False)
            assert region.stats()["errors"] > errors, f"{invalidation} failed silently"
        region.set("y", 1)
        assert region.get("y", "missing") == "missing"
        assert len(log_lines(caplog)) <= 3, log_lines(caplog)

    assert stray_files(source) == []
    assert sorted(stored_values(source)) == [*range(10), *range(100, 110)], "entries changed"
    assert region.get("x") == 1  # a read-only folder keeps even the entries it was asked to remove
    assert all(v == value_of(i) for i, v in stored_values(source).items() if i < 10)


@pytest.mark.parametrize("lock_state", ["no lock folder", "lock folder only", "lock file not yet opened"])
def test_lock_file_that_cannot_be_made_or_opened(lock_state, tmp_path, make_manager):
    """Calls still return results, at once (no wait for ``lock_timeout``), and raise nothing."""
    source = tmp_path / "cache"
    source.mkdir()
    if lock_state != "no lock folder":
        (source / ".locks").mkdir()
    if lock_state == "lock file not yet opened":
        (source / ".locks" / "keys.lock").touch(mode=0o644)
    manager = _file_region(make_manager, source, lock_timeout=5)
    fn = Counted()

    @manager.region("r")
    def f(i: int) -> Any:
        return fn(i)

    with read_only(source):
        start = time.monotonic()
        for n in range(50):
            assert f(n % 5) == value_of(n % 5)
        elapsed = time.monotonic() - start
        assert elapsed < 2.5, f"50 calls took {elapsed:.1f}s: waited for a lock"
        assert len(fn.computed) == 50
        assert f.invalidate(1) in (None, True, False)
        assert manager["r"].stats()["errors"] >= 50
    assert stray_files(source) == []
