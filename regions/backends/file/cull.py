"""Culling, the housekeeping of a file region: the :class:`Culler` a ``FileStore`` holds (``store.culler``).

What a cull removes: entries expired more than ``stale`` seconds ago, damaged entries, leases'
placeholders older than :data:`~regions.backends.contract.LEASE_SECONDS`, ``.tmp-*``
files that writers killed mid-write left (older than :data:`TEMP_GRACE`) and emptied folders;
with ``max_entries`` / ``max_size``, also the oldest entries, down to :data:`CULL_TO` of the bound.

When it runs: writes start it on a background daemon thread every ``cull_interval`` seconds (one
process per interval, through the mtime of ``LOCATION/.locks/culled``) and as soon as a bound is
exceeded (counted from the last cull plus this process's writes; a process's first write counts).
A cull reads every header, so no caller waits for it, and a write only compares a clock.
:meth:`Culler.cull` can also be called directly, as ``manage.py regions cull`` does.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from pathlib import Path

from ...signing import Signer
from ...throttle import loggable
from ..contract import LEASE_SECONDS, is_servable
from . import entry_format
from .folders import make_private_dirs
from .layout import ENTRY_SUFFIX, LOCKS_FOLDER, TEMP_PREFIX, walk

log = logging.getLogger("regions")

#: A ``.tmp-*`` file untouched this long belongs to a writer that died: cull removes it.
TEMP_GRACE = 60.0
#: A bound culls down to this share of itself, so the next cull is many writes away.
CULL_TO = 0.9


class Culler:
    """Culls the entry files of region ``region`` under ``root``; the store calls :meth:`wrote`
    after each write, :meth:`cleared` after a clear, :meth:`close` and :meth:`after_fork`."""

    def __init__(self, region: str, root: Path, signer: Signer, stale: float, *, max_entries: int = 0,
                 max_size: int = 0, interval: float = 300) -> None:
        self.region, self.root, self.signer, self.stale = region, root, signer, stale
        self.max_entries, self.max_size, self.interval = max_entries, max_size, interval
        #: Whether a bound is set: writes then count files and bytes.
        self.bounded = bool(max_entries or max_size)
        self._marker = root / LOCKS_FOLDER / "culled"  # its mtime: when any process last culled
        self._mutex = threading.Lock()
        self._thread: threading.Thread | None = None
        self._again = False
        self._due = time.monotonic() + interval  # of the next cull a write starts
        self._closed = False
        # Bounds: new files and grown bytes written by this process, and (entries, bytes, files
        # written, bytes written) when a cull last counted the folder (None: not yet).
        self._files_written = self._bytes_written = 0
        self._counted: tuple[int, int, int, int] | None = None

    def cull(self) -> int:
        """Remove dead files (see the module docstring), then the oldest entries over a bound.

        Returns the number of files removed. Safe while other threads and processes read and write:
        an entry is removed only if its path still holds the file that was examined.
        """
        now = time.time()
        marks = (self._files_written, self._bytes_written)  # writes after this are not all counted
        removed = 0
        live: list[tuple[float, int, str, int]] = []  # (stored_at, size, path, inode)
        folders: list[str] = []
        for dirpath, filenames in walk(self.root):
            if self._closed:
                break
            folders.append(dirpath)
            for name in filenames:
                path = os.path.join(dirpath, name)
                if name.endswith(ENTRY_SUFFIX):
                    try:
                        with open(path, "rb") as f:
                            st = os.fstat(f.fileno())
                            header = entry_format.header_of(f, self.signer)  # None: not ours, or damaged
                            if header is None and st.st_mtime > now - LEASE_SECONDS:
                                f.seek(0)
                                if entry_format.is_placeholder(f.read(len(entry_format.PLACEHOLDER))):
                                    continue  # a computation under way holds this lease
                    except OSError:
                        continue
                    if header is None or not is_servable((header[2], header[3], None), now, self.stale):
                        removed += _unlink_same(path, st.st_ino)
                    elif self.bounded:
                        live.append((header[2], st.st_size, path, st.st_ino))
                elif name.startswith(TEMP_PREFIX):
                    try:
                        if os.stat(path).st_mtime < now - TEMP_GRACE:
                            removed += _unlink_same(path, None)
                    except FileNotFoundError:
                        pass
        if self.bounded:
            removed += self._cull_to_bounds(live, marks)
        for folder in reversed(folders):  # deepest first; a folder a writer still uses is not empty
            if folder != str(self.root):
                try:
                    os.rmdir(folder)
                except OSError:
                    pass
        return removed

    def _cull_to_bounds(self, live: list[tuple[float, int, str, int]], marks: tuple[int, int]) -> int:
        live.sort()
        entries, size = len(live), sum(item[1] for item in live)
        # Over a bound: down to CULL_TO of it; within it, the loop below stops at once.
        keep_entries = int(self.max_entries * CULL_TO) if 0 < self.max_entries < entries else entries
        keep_size = int(self.max_size * CULL_TO) if 0 < self.max_size < size else size
        removed = 0
        for _stored_at, file_size, path, inode in live:
            if entries <= keep_entries and size <= keep_size:
                break
            removed += _unlink_same(path, inode)
            entries -= 1
            size -= file_size
        self._counted = (entries, size, *marks)
        return removed

    def over_bounds(self) -> bool:
        """Whether the entries, as last counted plus this process's writes since, exceed a bound."""
        if self._counted is None:
            return False
        entries, size, files_mark, bytes_mark = self._counted
        entries += self._files_written - files_mark
        size += self._bytes_written - bytes_mark
        return 0 < self.max_entries < entries or 0 < self.max_size < size

    def wrote(self, new_file: bool, grown_by: int) -> None:
        """After each write: start a background cull when one is due or a bound is exceeded."""
        if self.bounded:
            self._files_written += new_file
            self._bytes_written += grown_by
            if self._counted is None or self.over_bounds():  # the first write of a process counts
                self.start(force=True)
                return
        if self.interval and time.monotonic() >= self._due:
            self.start(force=False)

    def cleared(self) -> None:
        """After a clear: the folder holds no entries now."""
        if self.bounded:
            self._counted = (0, 0, self._files_written, self._bytes_written)

    def start(self, force: bool = True) -> threading.Thread | None:
        """Cull on a daemon thread, unless one runs (forced: it culls again if still over a bound).

        Unforced, skipped when any process culled this folder less than ``cull_interval`` ago.
        A write never waits for a cull: one reads every header of the folder.
        """
        with self._mutex:
            if self._closed:
                return None
            self._due = time.monotonic() + self.interval
            if self._thread is not None and self._thread.is_alive():
                self._again = self._again or force
                return self._thread
            if not force and not self._claim():
                return None
            thread = threading.Thread(target=self._run, name=f"regions-cull-{self.region}", daemon=True)
            try:
                thread.start()
            except RuntimeError as exc:  # no threads left (or shutting down): the write still counts
                log.warning("cache region %r (file): cannot start a cull: %s", self.region, exc)
                return None
            self._thread = thread
            return thread

    def _claim(self) -> bool:
        """Whether this process should cull now: no process did in the last ``cull_interval``."""
        try:
            age = time.time() - os.stat(self._marker).st_mtime
            if 0 <= age < self.interval:
                self._due = time.monotonic() + self.interval - age
                return False
        except FileNotFoundError:
            pass
        try:
            make_private_dirs(str(self._marker.parent))
            self._marker.touch()
        except OSError:
            pass
        return True

    def _run(self) -> None:
        while True:
            try:
                self.cull()
            except Exception as exc:  # a background thread has nobody to raise to
                log.warning("cache region %r (file): cull failed: %s: %s", self.region, type(exc).__name__,
                            loggable(exc))  # an error may name a file planted in the folder
            with self._mutex:
                again, self._again = self._again, False
                if self._closed or not (again and self.over_bounds()):
                    self._thread = None
                    return

    @property
    def thread(self) -> threading.Thread | None:
        """The background cull under way, if any."""
        return self._thread

    def close(self) -> None:
        """Start no more culls; one under way stops at its next folder."""
        with self._mutex:
            self._closed = True

    def after_fork(self) -> None:
        """In a forked child: the parent's cull thread is not this process's."""
        self._mutex = threading.Lock()
        self._thread = None
        self._again = False


def _unlink_same(path: str, inode: int | None) -> int:
    """Remove ``path`` if it is still the file ``inode`` (any file when ``None``): 1 if removed."""
    try:
        if inode is not None and os.stat(path).st_ino != inode:
            return 0  # rewritten since it was examined
        os.unlink(path)
    except FileNotFoundError:
        return 0
    return 1
