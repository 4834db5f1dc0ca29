"""``file``: one file per key under ``LOCATION``, so a hit costs the same at 10 entries or 10,000.

Layout: ``LOCATION/<stem>-<digest>/<aa>/<bb>/<digest>.entry``. A namespace's folder is a readable
stem of the namespace plus a 128-bit digest of all of it, so two distinct namespaces never share a
folder, whatever characters they hold. An entry file holds two pickles: a header
``(namespace, key, stored_at, ttl)``, checked before the value is read (an entry of another key or
namespace, a digest collision or a copied file, is a miss; an expired one is dropped without
reading its value), and then the value, streamed to and from disk (pickle protocol 5 writes and
reads big buffers directly, without a second copy in memory). Writes go to a ``.tmp-*`` file in
the same folder, then ``os.replace``: readers see the old entry or the new one, never half of one.
With ``fsync``, the entry and then its folder are fsynced before the write returns. A hit is one
``open`` and two ``pickle.load`` calls.

Creation locks (:meth:`FileNamespaceManager.shared_lock`): one per key, a POSIX record lock on one
byte of the region's single lock file ``LOCATION/.locks/keys.lock``, at an offset taken from 60
bits of a digest of the namespace and key. A computation blocks callers of its own key only, in
every process on the host, and no lock ever adds a file. Record locks belong to a process, so each
process keeps the file open once for its lifetime (closing any descriptor of it would drop all
of the process's locks on it) and tracks the offsets its threads hold; a forked child starts with
none.

Housekeeping (:meth:`FileStore.cull`): removes entries expired more than ``stale`` seconds ago,
damaged entries, ``.tmp-*`` files that writers killed mid-write left (older than a minute) and
emptied folders; with ``max_entries`` / ``max_size``, also the oldest entries, down to 90% of the
bound. Writes start it on a background daemon thread every ``cull_interval`` seconds (one process
per interval, through the mtime of ``LOCATION/.locks/culled``) and as soon as a bound is exceeded
(counted from the last cull plus this process's writes): a cull reads every header, so no caller
waits for it, and a write only compares a clock.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import logging
import os
import pickle
import re
import shutil
import tempfile
import threading
import time
from collections.abc import Hashable, Iterator
from pathlib import Path
from typing import Any

from ..api import Backend, Entry, Store, is_servable

log = logging.getLogger("regions")

_SUFFIX = ".entry"
_TEMP = ".tmp-"
_LOCKS = ".locks"
#: A ``.tmp-*`` file untouched this long belongs to a writer that died: cull removes it.
TEMP_GRACE = 60.0
#: A bound culls down to this share of itself, so the next cull is many writes away.
CULL_TO = 0.9
_STEM_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def folder_name(namespace: str) -> str:
    """``<readable stem>-<128-bit digest of namespace>``: distinct for distinct namespaces."""
    digest = hashlib.blake2b(namespace.encode("utf-8", "surrogatepass"), digest_size=16).hexdigest()
    stem = _STEM_UNSAFE.sub("_", namespace).strip("._-")
    if len(stem) > 60:
        stem = f"{stem[:20]}_{stem[-39:]}"
    return f"{stem}-{digest}" if stem else digest


class FileStore(Store):
    name = "file"
    needs_location = True
    options_schema = {
        "fsync": ((bool,), False, "fsync each entry and its folder before a write returns (slower)"),
        "max_entries": ((int,), None, "cull the oldest entries when there are more (unset or 0: no bound)"),
        "max_size": ((int,), None, "cull the oldest entries when their files hold more bytes (0: no bound)"),
        "cull_interval": ((int, float), 300, "seconds between background culls started by writes (0: none)"),
    }

    def __init__(self, region: str, location: Any, options: Any, **kwargs: Any) -> None:
        super().__init__(region, location, options, **kwargs)
        self.root = Path(location)
        get = self.options.get
        self.fsync = bool(get("fsync", False))
        self.max_entries = int(get("max_entries") or 0)
        self.max_size = int(get("max_size") or 0)
        self.cull_interval = float(get("cull_interval", 300))
        self.bounded = bool(self.max_entries or self.max_size)
        self.lock_path = str(self.root / _LOCKS / "keys.lock")
        self._cull_marker = self.root / _LOCKS / "culled"
        self._cull_mutex = threading.Lock()
        self._culler: threading.Thread | None = None
        self._cull_again = False
        self._cull_due = time.monotonic() + self.cull_interval  # of the next cull a write starts
        self._closed = False
        # Bounds: new files and grown bytes written by this process, and (entries, bytes, files
        # written, bytes written) when a cull last counted the folder (None: not yet).
        self._files_written = self._bytes_written = 0
        self._counted: tuple[int, int, int, int] | None = None

    @classmethod
    def check_location(cls, location: Any) -> str | None:
        if not isinstance(location, (str, os.PathLike)) or not str(location).strip():
            return "LOCATION must be a folder path (str or pathlib.Path)"
        return None

    def namespace(self, namespace: str) -> FileNamespaceManager:
        return FileNamespaceManager(namespace, self)

    def _walk(self, folder: Path | None = None) -> Iterator[tuple[str, list[str]]]:
        """``(folder, file names)`` of every folder but the lock folder."""
        top = str(folder or self.root)
        for dirpath, dirnames, filenames in os.walk(top):
            if dirpath == top:
                dirnames[:] = [d for d in dirnames if d != _LOCKS]
            yield dirpath, filenames

    def entry_files(self, folder: Path | None = None) -> Iterator[Path]:
        for dirpath, filenames in self._walk(folder):
            for name in filenames:
                if name.endswith(_SUFFIX):
                    yield Path(dirpath, name)

    def clear(self) -> None:
        """Remove this region's entry and temporary files (nothing else in LOCATION is touched).

        A write under way whose temporary file goes is dropped, as if it had come before the clear.
        """
        for dirpath, filenames in self._walk():
            for name in filenames:
                if name.endswith(_SUFFIX) or name.startswith(_TEMP):
                    _unlink(os.path.join(dirpath, name))
        if self.bounded:
            self._counted = (0, 0, self._files_written, self._bytes_written)

    def count(self) -> int:
        """Entries that can be served now (fresh, or expired within ``stale``): reads each header."""
        now = time.time()
        live = 0
        for path in self.entry_files():
            header = _read_header(str(path))
            if header is not None and is_servable((header[2], header[3], None), now, self.stale):
                live += 1
        return live

    def ping(self) -> bool:
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            with tempfile.TemporaryFile(dir=self.root):
                pass
        except OSError:
            return False
        return True

    # housekeeping ----------------------------------------------------------------------------
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
                if name.endswith(_SUFFIX):
                    try:
                        with open(path, "rb") as f:
                            st = os.fstat(f.fileno())
                            header = _load_header(f)
                    except OSError:
                        continue
                    if header is None or not is_servable((header[2], header[3], None), now, self.stale):
                        removed += _unlink_same(path, st.st_ino)
                    elif self.bounded:
                        live.append((header[2], st.st_size, path, st.st_ino))
                elif name.startswith(_TEMP):
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
            self._cull_marker.parent.mkdir(parents=True, exist_ok=True)
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

    # creation locks --------------------------------------------------------------------------
    def lock_file(self) -> _LockFile:
        """This process's open lock file of this folder (made, or opened again, when needed)."""
        try:
            st = os.stat(self.lock_path)
            found = _LOCK_FILES.get((st.st_dev, st.st_ino))
            if found is not None:
                return found
        except FileNotFoundError:
            pass
        with _LOCK_FILES_MUTEX:  # one descriptor per file and process: closing one drops all locks
            try:
                st = os.stat(self.lock_path)
                found = _LOCK_FILES.get((st.st_dev, st.st_ino))
                if found is not None:
                    return found
            except FileNotFoundError:
                os.makedirs(os.path.dirname(self.lock_path), exist_ok=True)
            fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o666)
            st = os.fstat(fd)
            # Another inode than the one stat() saw (replaced meanwhile) may already be open: keep
            # the registered descriptor and leave this one open, never close it.
            return _LOCK_FILES.setdefault((st.st_dev, st.st_ino), _LockFile(fd))


class _LockFile:
    """One open lock file of this process and the byte offsets its threads hold in it."""

    __slots__ = ("fd", "held", "mutex")

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.held: set[int] = set()
        self.mutex = threading.Lock()


#: Open lock files of this process by (device, inode).
_LOCK_FILES: dict[tuple[int, int], _LockFile] = {}
_LOCK_FILES_MUTEX = threading.Lock()


def _forget_parent_locks() -> None:
    """In a forked child: record locks are not inherited; the descriptors are, and stay usable."""
    global _LOCK_FILES_MUTEX
    _LOCK_FILES_MUTEX = threading.Lock()
    for lock_file in _LOCK_FILES.values():
        lock_file.held = set()
        lock_file.mutex = threading.Lock()


os.register_at_fork(after_in_child=_forget_parent_locks)


class _KeyLock:
    """The cross-process creation lock of one key: byte ``offset`` of the region's lock file."""

    __slots__ = ("store", "offset", "file")

    def __init__(self, store: FileStore, offset: int) -> None:
        self.store, self.offset = store, offset
        self.file: _LockFile | None = None

    def acquire(self, timeout: float) -> bool:
        """Take the lock, polling with a growing pause for up to ``timeout`` seconds (0: try once)."""
        deadline = time.monotonic() + timeout
        pause = 0.001
        while True:
            lock_file = self.store.lock_file()
            with lock_file.mutex:
                if self.offset not in lock_file.held and _try_lockf(lock_file.fd, self.offset):
                    lock_file.held.add(self.offset)
                    self.file = lock_file
                    return True
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            time.sleep(min(pause, left))
            pause = min(pause * 2, 0.05)

    def release(self) -> None:
        lock_file, self.file = self.file, None
        if lock_file is None:
            return
        with lock_file.mutex:
            if self.offset in lock_file.held:  # not after a fork: the child never held it
                lock_file.held.discard(self.offset)
                fcntl.lockf(lock_file.fd, fcntl.LOCK_UN, 1, self.offset)


def _try_lockf(fd: int, offset: int) -> bool:
    try:
        fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB, 1, offset)
    except OSError as exc:
        if exc.errno in (errno.EAGAIN, errno.EACCES):
            return False
        raise
    return True


class FileNamespaceManager(Backend):
    store_class = FileStore
    store: FileStore

    def __init__(self, namespace: str, store: Any = None, **beaker_options: Any) -> None:
        super().__init__(namespace, store, **beaker_options)
        self.folder = self.store.root / folder_name(namespace)
        self._prefix = f"{self.folder}{os.sep}"
        self._lock_key = hashlib.blake2b(namespace.encode("utf-8", "surrogatepass"), digest_size=32).digest()

    def _path(self, text: str) -> str:
        d = hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=20).hexdigest()
        return f"{self._prefix}{d[:2]}{os.sep}{d[2:4]}{os.sep}{d}{_SUFFIX}"

    def path(self, key: Hashable) -> Path:
        return Path(self._path(str(key)))

    def wire_key(self, key: Hashable) -> str:
        return self._path(str(key))

    def get_entry(self, key: Hashable) -> Entry | None:
        text = str(key)
        path = self._path(text)
        try:
            f = open(path, "rb")  # noqa: SIM115 - closed by the with below; a miss is no error
        except FileNotFoundError:
            return None
        with f:
            namespace, stored_key, stored_at, ttl = pickle.load(f)
            if stored_key != text or namespace != self.namespace:  # another entry's file: a miss
                return None
            if ttl is not None and stored_at + ttl + self.store.stale <= time.time():
                _unlink(path)
                return None
            return (stored_at, ttl, pickle.load(f))

    def set_entry(self, key: Hashable, entry: Entry) -> None:
        text = str(key)
        path = self._path(text)
        folder = os.path.dirname(path)
        try:
            fd, tmp = tempfile.mkstemp(dir=folder, prefix=_TEMP)
        except FileNotFoundError:
            fd, tmp = _make_temp(folder)
        store = self.store
        try:
            with os.fdopen(fd, "wb") as f:
                pickle.dump((self.namespace, text, entry[0], entry[1]), f, protocol=5)
                pickle.dump(entry[2], f, protocol=5)
                size = f.tell()
                if store.fsync:
                    f.flush()
                    os.fsync(f.fileno())
            new_file, old_size = True, 0
            if store.bounded:
                try:
                    old_size, new_file = os.stat(path).st_size, False
                except FileNotFoundError:
                    pass
            try:
                os.replace(tmp, path)
            except FileNotFoundError:
                return  # a clear removed the temporary file meanwhile: the value goes with the rest
            if store.fsync:
                _fsync_folder(folder)
        except BaseException:
            _unlink(tmp)
            raise
        store.wrote(new_file, size - old_size)

    def delete_entry(self, key: Hashable) -> None:
        _unlink(self._path(str(key)))

    def do_remove(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)

    def keys(self) -> list[Any]:
        found = []
        for path in self.store.entry_files(self.folder):
            header = _read_header(str(path))
            if header is not None and header[0] == self.namespace:
                found.append(header[1])
        return found

    def shared_lock(self, key: Hashable) -> _KeyLock:
        """This key's lock: one byte of the lock file at 60 bits of a digest of namespace and key."""
        digest = hashlib.blake2b(str(key).encode("utf-8", "surrogatepass"), digest_size=8, key=self._lock_key)
        return _KeyLock(self.store, int.from_bytes(digest.digest(), "big") >> 4)


def _load_header(f: Any) -> tuple[str, str, float, float | None] | None:
    """The header of an open entry file, or ``None`` when it is not one."""
    try:
        header = pickle.load(f)
        namespace, key, stored_at, ttl = header
        if not (isinstance(stored_at, (int, float)) and (ttl is None or isinstance(ttl, (int, float)))):
            return None
    except Exception:  # damaged, truncated, or written by an older layout
        return None
    return namespace, key, stored_at, ttl


def _read_header(path: str) -> tuple[str, str, float, float | None] | None:
    try:
        with open(path, "rb") as f:
            return _load_header(f)
    except OSError:
        return None


def _make_temp(folder: str) -> tuple[int, str]:
    """A temporary file in ``folder``, made first (a cull may remove it again while it is empty)."""
    for _attempt in range(3):
        os.makedirs(folder, exist_ok=True)
        try:
            return tempfile.mkstemp(dir=folder, prefix=_TEMP)
        except FileNotFoundError:
            continue
    return tempfile.mkstemp(dir=folder, prefix=_TEMP)


def _fsync_folder(folder: str) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _unlink(path: str | Path) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def _unlink_same(path: str, inode: int | None) -> int:
    """Remove ``path`` if it is still the file ``inode`` (any file when ``None``): 1 if removed."""
    try:
        if inode is not None and os.stat(path).st_ino != inode:
            return 0  # rewritten since it was examined
        os.unlink(path)
    except FileNotFoundError:
        return 0
    return 1
