"""``file``: one file per key under ``LOCATION``, so a hit costs the same at 10 entries or 10,000.

A namespace's folder is a readable stem of the namespace plus a 128-bit digest of all of it, so two
distinct namespaces never share a folder, whatever characters they hold; an entry's file is named
by a digest of its key (:mod:`.layout`). An entry file (:mod:`.entry_format`) holds the value, then
a header ``(namespace, key, stored_at, ttl, ...)``, each with its tag: nothing is unpickled before
its tag is checked, a file of another key or namespace (a copied file) is rejected, an expired one
is dropped without reading its value, and the value is streamed to and from disk (pickle protocol
5 writes big buffers directly; large files are mapped, not copied).
Writes go to a ``.tmp-*`` file in the same folder, then ``os.replace``: readers see the old entry
or the new one, never half of one. A write that fails (a full disk, a read-only folder) removes its
temporary file and raises, for the region to count; on a read-only folder an expired entry that
cannot be removed is still a miss. With ``fsync``, the entry and then its folder are fsynced
before the write returns. A hit is one ``open``, one ``read``, two tags and two ``pickle.loads``.

Leases (misses only): a computation takes the identity of the key's file (inode, size, mtime and
its last 32 bytes: the header's tag, new for each write), creating a placeholder file
(:data:`.entry_format.PLACEHOLDER`, a miss for readers) where there is none; its store replaces the
file only if it still has that identity, checked and replaced under the key's write lock, which
:meth:`FileNamespaceManager.delete_entry` takes too: a delete by any process on the host after the
lease voids it.

The store's parts: creation locks (:meth:`FileNamespaceManager.shared_lock`), one byte of one
lock file per key for every process on the host (:mod:`.locks`); housekeeping, ``store.culler``,
on a background thread that writes start, removing dead files and, over ``max_entries`` /
``max_size``, the oldest entries (:mod:`.cull`); tag versions, ``store.tags`` (:mod:`.tags`);
invalidation logs (:mod:`.sync_log`); folders made ``0o700``, and who else could write them
(:mod:`.folders`).
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Hashable, Iterator
from pathlib import Path
from typing import Any

from ...signing import RejectedEntry
from ..contract import BOOKKEEPING, Backend, Entry, Store, is_servable
from . import entry_format
from .cull import Culler
from .folders import folder_exposure, make_private_dirs
from .layout import (
    BOOKKEEPING_FOLDER,
    ENTRY_SUFFIX,
    LOCKS_FOLDER,
    TEMP_PREFIX,
    TIERED_FOLDER,
    entry_files,
    folder_name,
    unique_name,
    walk,
)
from .locks import KeyLock
from .sync_log import FileLog
from .tags import FileTags

__all__ = ["FileNamespaceManager", "FileStore", "folder_name"]

log = logging.getLogger("regions")
_READ_FLAGS = os.O_RDONLY | getattr(os, "O_CLOEXEC", 0)
#: Write locks of keys are bytes of the creation locks' file above every creation lock's offset.
_WRITE_LOCKS = 1 << 60
#: What a lease knows of a file: (inode, size, mtime_ns, last 32 bytes); ``None``: no file.
Identity = tuple[int, int, int, bytes] | None


class FileStore(Store):
    """Entry files under ``LOCATION``; culls by :attr:`culler`, tag versions in :attr:`tags`."""

    signs = True
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
        self.lock_path = str(self.root / LOCKS_FOLDER / "keys.lock")
        self.culler = Culler(
            region, self.root, self.signer, self.stale, max_entries=int(get("max_entries") or 0),
            max_size=int(get("max_size") or 0), interval=float(get("cull_interval", 300)),
        )
        self.tags = FileTags(self.root, self.identity, region)
        if exposure := folder_exposure(self.root):  # once per store: who else could plant entries
            log.warning("cache region %r (file): LOCATION %s %s. %s", region, self.root, *exposure)

    @classmethod
    def check_location(cls, location: Any) -> str | None:
        if not isinstance(location, (str, os.PathLike)) or not str(location).strip():
            return "LOCATION must be a folder path (str or pathlib.Path)"
        return None

    def namespace(self, namespace: str) -> FileNamespaceManager:
        return FileNamespaceManager(namespace, self)

    def clear(self) -> None:
        """Remove this region's entry and temporary files (nothing else in LOCATION is touched).

        A write under way whose temporary file goes is dropped, as if it had come before the clear.
        """
        for dirpath, filenames in walk(self.root):
            for name in filenames:
                if name.endswith(ENTRY_SUFFIX) or name.startswith(TEMP_PREFIX):
                    _unlink(os.path.join(dirpath, name))
        self.culler.cleared()

    def count(self) -> int:
        """Entries that can be served now (fresh, or expired within ``stale``): reads each header."""
        now = time.time()
        live = 0
        for path in entry_files(self.root):
            header = entry_format.read_header(str(path), self.signer)
            if header is not None and is_servable((header[2], header[3], None), now, self.stale):
                live += 1
        return live

    def sync_storage(self, name: str) -> FileLog:
        return FileLog(self.root, name, self.region)

    def derive(self, region: str, identity: str) -> FileStore:
        """A folder of its own inside this one (``.tiered/``: never walked by this store). Its name
        has no version: after an upgrade, its culls remove the entries of the version before."""
        root = self.root / TIERED_FOLDER / unique_name(identity)
        return FileStore(region, root, self.options, identity=identity, signer=self.signer)

    def ping(self) -> bool:
        try:
            make_private_dirs(str(self.root))
            with tempfile.TemporaryFile(dir=self.root):
                pass
        except OSError:
            return False
        return True

    def cull(self) -> int:
        """Cull now (:meth:`.Culler.cull`), as ``manage.py regions cull`` does: files removed."""
        return self.culler.cull()

    def close(self) -> None:
        self.culler.close()
        super().close()

    def after_fork(self) -> None:
        super().after_fork()
        self.culler.after_fork()


class FileNamespaceManager(Backend):
    store_class = FileStore
    store: FileStore

    def __init__(self, namespace: str, store: Any = None, **beaker_options: Any) -> None:
        super().__init__(namespace, store, **beaker_options)
        top = self.store.root
        if namespace.endswith(":" + BOOKKEEPING):  # in a dot folder: never counted or cleared
            top = top / BOOKKEEPING_FOLDER
        self.folder = top / folder_name(namespace)
        self._prefix = f"{self.folder}{os.sep}"
        self._lock_key = hashlib.blake2b(namespace.encode("utf-8", "surrogatepass"), digest_size=32).digest()

    def _path(self, text: str) -> str:
        d = hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=20).hexdigest()
        return f"{self._prefix}{d[:2]}{os.sep}{d}{ENTRY_SUFFIX}"  # (layout.ENTRY_FOLDER_LEVELS)

    def path(self, key: Hashable) -> Path:
        return Path(self._path(str(key)))

    def wire_key(self, key: Hashable) -> str:
        return self._path(str(key))

    def get_entry(self, key: Hashable) -> Entry | None:
        text = str(key)
        path = self._path(text)
        try:
            fd = os.open(path, _READ_FLAGS)
        except FileNotFoundError:
            return None
        try:
            data = entry_format.read_fd(fd)
        finally:
            os.close(fd)
        signer = self.store.signer
        try:
            head = entry_format.header(data, signer)
        except RejectedEntry:
            if entry_format.is_placeholder(data):
                return None  # a computation of this key holds a lease: a miss
            raise
        namespace, stored_key, stored_at, ttl = head[:4]
        if stored_key != text or namespace != self.namespace:
            raise RejectedEntry("the entry file of another key (copied, or moved)")
        if ttl is not None and stored_at + ttl + self.store.stale <= time.time():
            _discard(path)  # best effort: a folder that is read-only keeps it, still a miss
            return None
        return (stored_at, ttl, entry_format.value(data, head, signer))

    def _write_temp(self, text: str, entry: Entry) -> tuple[str, int]:
        """Write ``entry`` to a new temporary file next to its entry file: ``(its path, size)``."""
        folder = os.path.dirname(self._path(text))
        try:
            fd, tmp = tempfile.mkstemp(dir=folder, prefix=TEMP_PREFIX)
        except FileNotFoundError:
            fd, tmp = _make_temp(folder)
        store = self.store
        try:
            with os.fdopen(fd, "wb") as f:
                size = entry_format.write(
                    f, store.signer, self.namespace, text, entry[0], entry[1], entry[2], store.region
                )
                if store.fsync:
                    f.flush()
                    os.fsync(f.fileno())
        except BaseException:
            _discard(tmp)
            raise
        return tmp, size

    def _commit(self, tmp: str, path: str, size: int) -> None:
        """Move the temporary file ``tmp`` to ``path`` (removed on a failure)."""
        store = self.store
        culler = store.culler
        try:
            new_file, old_size = True, 0
            if culler.bounded:
                try:
                    old_size, new_file = os.stat(path).st_size, False
                except FileNotFoundError:
                    pass
            try:
                os.replace(tmp, path)
            except FileNotFoundError:
                return  # a clear removed the temporary file meanwhile: the value goes with the rest
            if store.fsync:
                _fsync_folder(os.path.dirname(path))
        except BaseException:
            _discard(tmp)  # a failure to clean up must not hide the failure itself
            raise
        culler.wrote(new_file, size - old_size)

    def set_entry(self, key: Hashable, entry: Entry) -> None:
        text = str(key)
        tmp, size = self._write_temp(text, entry)
        self._commit(tmp, self._path(text), size)

    def lease(self, key: Hashable) -> tuple[str, Identity] | None:
        """``(path, identity)`` of the key's file; where there is none, of a placeholder made now
        (linked into place: it appears whole, and never over a file another process made).
        ``None`` (no lease: a plain store) when the folder takes no placeholder (read-only, full):
        the store then fails too, and is counted once, as without leases."""
        path = self._path(str(key))
        found = _identity(path)
        if found is None:
            try:
                self._place_holder(path)
            except OSError:
                return None
            found = _identity(path)  # None: deleted already, and the lease is void
        return path, found

    @staticmethod
    def _place_holder(path: str) -> None:
        folder = os.path.dirname(path)
        try:
            fd, tmp = tempfile.mkstemp(dir=folder, prefix=TEMP_PREFIX)
        except FileNotFoundError:
            fd, tmp = _make_temp(folder)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(entry_format.placeholder())
            try:
                os.link(tmp, path)
            except FileExistsError:
                pass  # another computation's placeholder, or an entry just stored: lease it
        finally:
            _discard(tmp)

    def set_entry_leased(self, key: Hashable, entry: Entry, lease: tuple[str, Identity]) -> bool:
        """Replace the file only if it is still the one leased (checked under the key's write lock,
        which deletes take too); ``False``: deleted or rewritten since."""
        text = str(key)
        path, leased = lease
        if leased is None or path != self._path(text):
            return False
        try:
            tmp, size = self._write_temp(text, entry)
        except BaseException:
            self._drop_placeholder(key, path, leased)  # a full disk leaves no placeholder behind
            raise
        try:
            with self._write_lock(key) as held:
                if not held or _identity(path) != leased:
                    return False
                self._commit(tmp, path, size)
                return True
        finally:
            _discard(tmp)  # gone when committed

    def _drop_placeholder(self, key: Hashable, path: str, leased: Identity) -> None:
        """Remove the placeholder this lease made, if it is still there (best effort)."""
        try:
            with self._write_lock(key) as held:
                if held and _identity(path) == leased:
                    with open(path, "rb") as f:
                        if entry_format.is_placeholder(f.read(len(entry_format.PLACEHOLDER))):
                            os.unlink(path)
        except OSError:
            pass

    def delete_entry(self, key: Hashable) -> None:
        with self._write_lock(key):
            _unlink(self._path(str(key)))

    @contextlib.contextmanager
    def _write_lock(self, key: Hashable) -> Iterator[bool]:
        """The key's write lock, held for a check-and-replace or a delete (short): yields whether it
        is held (a lock file that cannot be opened: a delete goes on without it)."""
        lock = KeyLock(self.store.lock_path, _WRITE_LOCKS | self.shared_lock(key).offset)
        try:
            held = lock.acquire(self.store.lock_timeout)
        except OSError:
            held = False
        try:
            yield held
        finally:
            if held:
                lock.release()

    def do_remove(self) -> None:
        """Remove this namespace's folder; raises the first failure (files already gone are none)."""
        failures: list[BaseException] = []

        def note(exc: BaseException) -> None:
            if not isinstance(exc, FileNotFoundError):
                failures.append(exc)

        if sys.version_info >= (3, 12):
            shutil.rmtree(self.folder, onexc=lambda _f, _p, exc: note(exc))
        else:
            shutil.rmtree(self.folder, onerror=lambda _f, _p, info: note(info[1]))
        if failures:
            raise failures[0]

    def keys(self) -> list[Any]:
        found = []
        for path in entry_files(self.folder):
            header = entry_format.read_header(str(path), self.store.signer)
            if header is not None and header[0] == self.namespace:
                found.append(header[1])
        return found

    def shared_lock(self, key: Hashable) -> KeyLock:
        """This key's lock: one byte of the lock file at 60 bits of a digest of namespace and key."""
        digest = hashlib.blake2b(str(key).encode("utf-8", "surrogatepass"), digest_size=8, key=self._lock_key)
        return KeyLock(self.store.lock_path, int.from_bytes(digest.digest(), "big") >> 4)


def _identity(path: str) -> Identity:
    """What tells one write of ``path`` from another (``None``: no file)."""
    try:
        fd = os.open(path, _READ_FLAGS)
    except FileNotFoundError:
        return None
    try:
        st = os.fstat(fd)
        return (st.st_ino, st.st_size, st.st_mtime_ns, os.pread(fd, 32, max(0, st.st_size - 32)))
    finally:
        os.close(fd)


def _make_temp(folder: str) -> tuple[int, str]:
    """A temporary file in ``folder``, made first (a cull may remove it again while it is empty)."""
    for _attempt in range(3):
        make_private_dirs(folder)
        try:
            return tempfile.mkstemp(dir=folder, prefix=TEMP_PREFIX)
        except FileNotFoundError:
            continue
    return tempfile.mkstemp(dir=folder, prefix=TEMP_PREFIX)


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


def _discard(path: str) -> None:
    """Remove ``path`` if it can be: cleaning up after a failure must not hide that failure."""
    try:
        os.unlink(path)
    except OSError:
        pass
