"""Who can write a file region's folder: LOCATION is tried for real, and a folder other users can
write is logged when the region is built. Real folders; as root (containers often run so) too."""

from __future__ import annotations

import logging
import multiprocessing
import os
import stat
from pathlib import Path
from typing import Any

import pytest

from regions import CacheManager, ConfigurationError, config
from regions.backends.file import folders

ROOT_ONLY = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (os.chown to another user)")


def file_config(location: Path | str) -> dict[str, dict[str, object]]:
    return {"files": {"BACKEND": "file", "LOCATION": location, "TIMEOUT": 60}}


@pytest.mark.parametrize("location", ["/proc/forbidden/here", "/proc"])
def test_e007_a_location_that_cannot_be_created_even_as_root(location: str) -> None:
    """``os.access`` says root may write /proc; making the folder and a probe file says otherwise."""
    [problem] = config.check(file_config(location))
    assert problem.id == "E007" and problem.region == "files" and problem.option == "LOCATION"
    assert location in problem.message and problem.hint
    with pytest.raises(ConfigurationError, match="cannot be created or written"):
        CacheManager(file_config(location))


def test_e007_leaves_no_folder_behind_when_it_fails_half_way(tmp_path: Path) -> None:
    location = tmp_path / "made" / "then" / ("x" * 300)  # "made" and "then" can be made, the last not
    [problem] = config.check(file_config(location))
    assert problem.id == "E007" and "File name too long" in problem.message
    assert list(tmp_path.iterdir()) == []


def test_a_location_that_can_be_created_passes_and_is_left_as_it_was(tmp_path: Path) -> None:
    assert config.check(file_config(tmp_path / "new" / "files")) == []
    assert list(tmp_path.iterdir()) == [], "the check removes what it made; the store makes it on first write"
    existing = tmp_path / "existing"
    existing.mkdir()
    assert config.check(file_config(existing)) == []
    assert list(existing.iterdir()) == [], "no probe file is left"


def build_logs(caplog: pytest.LogCaptureFixture, location: Path) -> list[str]:
    """Warnings of the ``regions`` logger while a manager with a file region at ``location`` is built
    and used (a write, a hit, a miss)."""
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="regions"):
        manager = CacheManager(file_config(location), key_prefix="sec")
        try:
            region = manager["files"]
            region.set("k", "v")
            assert region.get("k") == "v" and region.get("other") is None, "it still caches"
        finally:
            manager.close()
    return [r.getMessage() for r in caplog.records if r.name == "regions" and "LOCATION" in r.getMessage()]


def test_a_folder_everyone_can_write_is_logged_once_when_the_region_is_built(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    folder = tmp_path / "files"
    folder.mkdir()
    folder.chmod(0o777)
    [line] = build_logs(caplog, folder)
    assert "'files'" in line and str(folder) in line and "writable by group and others (mode 777)" in line
    assert f"chmod 700 {folder}" in line and "chown" not in line
    folder.chmod(0o700)
    assert build_logs(caplog, folder) == []


@ROOT_ONLY
def test_a_folder_owned_by_another_user_is_logged(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    folder = tmp_path / "files"
    folder.mkdir(mode=0o700)
    os.chown(folder, 65534, 65534)
    [line] = build_logs(caplog, folder)
    assert "owned by" in line and "uid 65534" in line and f"chown root {folder} && chmod 700 {folder}" in line


def test_folder_exposure_of_a_missing_folder_or_a_file_is_none(tmp_path: Path) -> None:
    assert folders.folder_exposure(tmp_path / "missing") is None
    (tmp_path / "a-file").write_text("x")
    os.chmod(tmp_path / "a-file", 0o666)
    assert folders.folder_exposure(tmp_path / "a-file") is None


def test_folders_the_store_makes_are_private_whatever_the_umask(tmp_path: Path, make_manager: Any) -> None:
    """Under ``umask 000`` (some containers) every folder a file region makes is 0o700, and so is
    its lock file: nobody else can plant entries there."""
    location = tmp_path / "a" / "b" / "cache"
    old = os.umask(0)
    try:
        manager = make_manager({"r": {"BACKEND": "file", "LOCATION": str(location)}})
        manager["r"].set("k", "v")
        manager["r"].get_or_create("k2", lambda: "v2")  # takes the per-key lock: makes .locks
    finally:
        os.umask(old)
    made = [tmp_path / "a", tmp_path / "a" / "b", location, *[p for p in location.rglob("*") if p.is_dir()]]
    modes = {str(p.relative_to(tmp_path)): oct(stat.S_IMODE(p.stat().st_mode)) for p in made}
    assert set(modes.values()) == {"0o700"}, modes
    for lock in location.rglob("*.lock"):
        assert stat.S_IMODE(lock.stat().st_mode) & 0o077 == 0, lock


def check_in_step(base: str, rounds: int, barrier: Any, out: Any) -> None:
    """Spawned: check ``base/d<i>/cache`` for each round, all processes at once (a barrier)."""
    found = []
    for i in range(rounds):
        barrier.wait(30)
        why = folders.unwritable(os.path.join(base, f"d{i}", "cache"))
        if why is not None:
            found.append(why)
    out.put(found)


def test_processes_checking_one_new_folder_at_once_all_pass(tmp_path: Path) -> None:
    """gunicorn workers build their regions at the same moment: each checks the folder by making it
    and removing it again, so one may remove it between another's steps. None may fail for that
    (it did: 'No such file or directory', 'File exists')."""
    ctx = multiprocessing.get_context("spawn")
    processes, rounds = 4, 40
    barrier, out = ctx.Barrier(processes), ctx.Queue()
    args = (str(tmp_path), rounds, barrier, out)
    procs = [ctx.Process(target=check_in_step, args=args) for _ in range(processes)]
    for p in procs:
        p.start()
    found = [why for _ in procs for why in out.get(timeout=120)]
    for p in procs:
        p.join(30)
    assert found == []
