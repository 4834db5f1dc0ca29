"""An invalidation log (:mod:`regions.sync`) in a folder: ``LOCATION/.sync/<digest>/``.

``seq`` holds the counter as text; record ``n`` is the file ``n``. An append holds an exclusive
lock on the folder's ``lock`` file, writes the record, then the counter (both by rename), so a
reader never sees a counter without its record. Records older than :data:`KEEP` are removed by
the append that passes them.

A ``seq`` that holds no number (written by something else) is replaced, under the lock, by the look
or the append that finds it, with the time in µs: far above any counter made from the time in ms,
so every reader resets (:mod:`regions.sync.log`), and the append goes on.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import tempfile
import time
from pathlib import Path

from ...sync.log import MAX_GAP
from ...throttle import Throttle, shown
from .folders import make_private_dirs
from .layout import SYNC_FOLDER

#: Records kept in the folder: as many as a reader fetches before it resets.
KEEP = MAX_GAP
_READ = os.O_RDONLY | getattr(os, "O_CLOEXEC", 0)


def _number(raw: bytes) -> int | None:
    """The counter ``seq`` holds, or ``None`` when it holds no number (digits, spaces around)."""
    raw = raw.strip()
    return int(raw) if raw.isdigit() and len(raw) < 19 else None


def _read(path: str) -> bytes | None:
    try:
        fd = os.open(path, _READ)
    except FileNotFoundError:
        return None
    try:
        return os.read(fd, 1 << 16)
    finally:
        os.close(fd)


class FileLog:
    """The log named ``name`` (the synced region's identity) under folder ``root``."""

    def __init__(self, root: str | Path, name: str, region: str = "") -> None:
        digest = hashlib.blake2b(name.encode("utf-8", "surrogatepass"), digest_size=16).hexdigest()
        self.folder = os.path.join(str(root), SYNC_FOLDER, digest)
        self.seq_path = os.path.join(self.folder, "seq")
        self._damage_log = Throttle(f"cache region {region!r} (file): ")

    def head(self) -> int:
        raw = _read(self.seq_path)
        n = _number(raw) if raw is not None else None
        if n is None:  # new, or holds no number: made (or replaced) under the lock
            with self._locked():
                raw = _read(self.seq_path)
                if raw is None:
                    start = time.time_ns() // 1_000_000  # above any value used before
                    self._write("seq", str(start).encode())
                    return start
                n = _number(raw)
                if n is None:
                    n = self._replace(raw)
                    self._write("seq", str(n).encode())
        return n

    def append(self, record: bytes) -> int:
        with self._locked():
            raw = _read(self.seq_path)
            if raw is None:
                last = time.time_ns() // 1_000_000
            else:
                number = _number(raw)
                last = number if number is not None else self._replace(raw)
            n = last + 1
            self._write(str(n), record)
            self._write("seq", str(n).encode())
            try:
                os.unlink(os.path.join(self.folder, str(n - KEEP)))
            except FileNotFoundError:
                pass
        return n

    def records(self, first: int, last: int) -> dict[int, bytes]:
        found = {}
        for n in range(first, last + 1):
            raw = _read(os.path.join(self.folder, str(n)))
            if raw is not None:
                found[n] = raw
        return found

    def _replace(self, raw: bytes) -> int:
        """The value that replaces a ``seq`` holding ``raw``, no number (under the lock): the time
        in µs, more than :data:`~regions.sync.log.MAX_GAP` above any counter made from the time in
        ms, so every reader resets. Logged (throttled) with what the file held."""
        value = time.time_ns() // 1000
        self._damage_log.warning(
            "invalidation log counter %s held %s, not a number; replaced by %d (every process "
            "reading the log drops its local entries once). Something else writes in this "
            "region's folder: give the region a LOCATION of its own",
            self.seq_path, shown(raw), value,
        )
        return value

    def _write(self, name: str, data: bytes) -> None:
        fd, tmp = tempfile.mkstemp(dir=self.folder, prefix=".tmp-")
        try:
            os.write(fd, data)
            os.close(fd)
            os.replace(tmp, os.path.join(self.folder, name))
        except BaseException:
            try:
                os.unlink(tmp)
            except OSError:
                pass
            raise

    def _locked(self) -> _Lock:
        return _Lock(self.folder)


class _Lock:
    """An exclusive ``flock`` on the folder's ``lock`` file, for one append (all processes)."""

    def __init__(self, folder: str) -> None:
        self.folder = folder
        self.fd = -1

    def __enter__(self) -> None:
        make_private_dirs(self.folder)
        self.fd = os.open(os.path.join(self.folder, "lock"), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        fcntl.flock(self.fd, fcntl.LOCK_EX)

    def __exit__(self, *exc: object) -> None:
        os.close(self.fd)  # drops the flock
