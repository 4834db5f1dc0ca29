"""Culling, the housekeeping of the ``file`` backend: :class:`Culling`, which ``FileStore`` mixes in.

What a cull removes: entries expired more than ``stale`` seconds ago, damaged entries, ``.tmp-*``
files that writers killed mid-write left (older than :data:`TEMP_GRACE`) and emptied folders;
with ``max_entries`` / ``max_size``, also the oldest entries, down to :data:`CULL_TO` of the bound.

When it runs: writes start it on a background daemon thread every ``cull_interval`` seconds (one
process per interval, through the mtime of ``LOCATION/.locks/culled``) and as soon as a bound is
exceeded (counted from the last cull plus this process's writes; a process's first write counts).
A cull reads every header, so no caller waits for it, and a write only compares a clock.
:meth:`Culling.cull` can also be called directly, as ``manage.py regions cull`` does.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO, ClassVar

from ..contract import Store, is_servable
from .folders import make_private_dirs

log = logging.getLogger("regions")

#: A ``.tmp-*`` file untouched this long belongs to a writer that died: cull removes it.
TEMP_GRACE = 60.0
#: A bound culls down to this share of itself, so the next cull is many writes away.
CULL_TO = 0.9


class Culling(Store):
    """Culling for a store of entry files; :class:`~regions.backends.file.FileStore` mixes it in.

    The store sets ``root`` (its folder) and reads its options into ``max_entries``, ``max_size``,
    ``cull_interval`` and ``bounded``, then calls :meth:`_init_culling`; it provides its folder
    layout (:attr:`entry_suffix`, :attr:`temp_prefix`, :meth:`_walk`, :meth:`_header`) and calls
    :meth:`wrote` after each write.
    """

    #: Entry files' names end with this; writers' temporary files' names start with that.
    entry_suffix: ClassVar[str]
    temp_prefix: ClassVar[str]

    root: Path
    max_entries: int
    max_size: int
    cull_interval: float
    bounded: bool

    def _init_culling(self, marker: Path) -> None:
        """Set up the cull state; ``marker``'s mtime is when any process last culled."""
        self._cull_marker = marker
        self._cull_mutex = threading.Lock()
        self._culler: threading.Thread | None = None
        self._cull_again = False
        self._cull_due = time.monotonic() + self.cull_interval  # of the next cull a write starts
        self._closed = False
        # Bounds: new files and grown bytes written by this process, and (entries, bytes, files
        # written, bytes written) when a cull last counted the folder (None: not yet).
        self._files_written = self._bytes_written = 0
        self._counted: tuple[int, int, int, int] | None = None

    def _walk(self) -> Iterator[tuple[str, list[str]]]:
        """``(folder, file names)`` of every folder that may hold entry or temporary files."""
        raise NotImplementedError

    def _header(self, f: IO[bytes]) -> tuple[str, str, float, float | None] | None:
        """The header of an open entry file, or ``None`` when it is not one."""
        raise NotImplementedError

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
        for dirpath, filenames in self._walk():
            if self._closed:
                break
            folders.append(dirpath)
            for name in filenames:
                path = os.path.join(dirpath, name)
                if name.endswith(self.entry_suffix):
                    try:
                        with open(path, "rb") as f:
                            st = os.fstat(f.fileno())
                            header = self._header(f)
                    except OSError:
                        continue
                    if header is None or not is_servable((header[2], header[3], None), now, self.stale):
                        removed += _unlink_same(path, st.st_ino)
                    elif self.bounded:
                        live.append((header[2], st.st_size, path, st.st_ino))
                elif name.startswith(self.temp_prefix):
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
                self.start_cull(force=True)
                return
        if self.cull_interval and time.monotonic() >= self._cull_due:
            self.start_cull(force=False)

    def start_cull(self, force: bool = True) -> threading.Thread | None:
        """Cull on a daemon thread, unless one runs (forced: it culls again if still over a bound).

        Unforced, skipped when any process culled this folder less than ``cull_interval`` ago.
        A write never waits for a cull: one reads every header of the folder.
        """
        with self._cull_mutex:
            if self._closed:
                return None
            self._cull_due = time.monotonic() + self.cull_interval
            if self._culler is not None and self._culler.is_alive():
                self._cull_again = self._cull_again or force
                return self._culler
            if not force and not self._claim_cull():
                return None
            thread = threading.Thread(
                target=self._cull_in_background, name=f"regions-cull-{self.region}", daemon=True
            )
            try:
                thread.start()
            except RuntimeError as exc:  # no threads left (or shutting down): the write still counts
                log.warning("cache region %r (file): cannot start a cull: %s", self.region, exc)
                return None
            self._culler = thread
            return thread

    def _claim_cull(self) -> bool:
        """Whether this process should cull now: no process did in the last ``cull_interval``."""
        try:
            age = time.time() - os.stat(self._cull_marker).st_mtime
            if 0 <= age < self.cull_interval:
                self._cull_due = time.monotonic() + self.cull_interval - age
                return False
        except FileNotFoundError:
            pass
        try:
            make_private_dirs(str(self._cull_marker.parent))
            self._cull_marker.touch()
        except OSError:
            pass
        return True

    def _cull_in_background(self) -> None:
        while True:
            try:
                self.cull()
            except Exception as exc:  # a background thread has nobody to raise to
                log.warning("cache region %r (file): cull failed: %s: %s", self.region, type(exc).__name__,
                            exc)
            with self._cull_mutex:
                again, self._cull_again = self._cull_again, False
                if self._closed or not (again and self.over_bounds()):
                    self._culler = None
                    return

    @property
    def culling(self) -> threading.Thread | None:
        """The background cull under way, if any."""
        return self._culler

    def close(self) -> None:
        with self._cull_mutex:
            self._closed = True
        super().close()

    def after_fork(self) -> None:
        super().after_fork()
        self._cull_mutex = threading.Lock()
        self._culler = None
        self._cull_again = False


def _unlink_same(path: str, inode: int | None) -> int:
    """Remove ``path`` if it is still the file ``inode`` (any file when ``None``): 1 if removed."""
    try:
        if inode is not None and os.stat(path).st_ino != inode:
            return 0  # rewritten since it was examined
        os.unlink(path)
    except FileNotFoundError:
        return 0
    return 1
