"""``file``: one file per key under ``LOCATION``, so a hit costs the same at 10 entries or 10,000.

Layout: ``LOCATION/<namespace>/<aa>/<bb>/<digest>.entry``. A file holds two pickles: a header
``(key, stored_at, ttl)`` and then the value, so the key is checked before the value is read,
an expired entry is dropped without reading its value, and large values stream to and from disk
(pickle protocol 5 writes and reads big buffers directly, without a second copy in memory).
Writes go to a temporary file in the same folder, then ``os.replace``: readers see the old entry or
the new one, never half of one.

Creation locks: an in-process lock per key, plus an ``flock`` on one of 64 lock files per region
under ``LOCATION/.locks`` for other processes (bounded: lock files never pile up).
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import pickle
import shutil
import tempfile
import threading
import time
from collections.abc import Hashable, Iterator
from pathlib import Path
from typing import Any

from beaker.synchronization import NameLock

from .. import keys
from ..api import Backend, Entry, Store, is_servable

_SUFFIX = ".entry"
_STRIPES = 64


class FileStore(Store):
    name = "file"
    needs_location = True
    options_schema = {
        "fsync": ((bool,), False, "fsync each entry before it becomes visible (slower, survives power loss)"),
    }

    def __init__(self, region: str, location: Any, options: Any, **kwargs: Any) -> None:
        super().__init__(region, location, options, **kwargs)
        self.root = Path(location)
        self.fsync = bool(self.options.get("fsync", False))
        self._held = threading.local()

    @classmethod
    def check_location(cls, location: Any) -> str | None:
        if not isinstance(location, (str, os.PathLike)) or not str(location).strip():
            return "LOCATION must be a folder path (str or pathlib.Path)"
        return None

    def namespace(self, namespace: str) -> FileNamespaceManager:
        return FileNamespaceManager(namespace, self)

    def entry_files(self, folder: Path | None = None) -> Iterator[Path]:
        for dirpath, dirnames, filenames in os.walk(folder or self.root):
            if dirpath == str(self.root):
                dirnames[:] = [d for d in dirnames if d != ".locks"]
            for name in filenames:
                if name.endswith(_SUFFIX):
                    yield Path(dirpath, name)

    def clear(self) -> None:
        """Remove this region's entry files (only ``*.entry``: nothing else in LOCATION is touched)."""
        for path in self.entry_files():
            try:
                path.unlink()
            except FileNotFoundError:
                pass

    def count(self) -> int:
        return sum(1 for _ in self.entry_files())

    def ping(self) -> bool:
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            with tempfile.TemporaryFile(dir=self.root):
                pass
        except OSError:
            return False
        return True

    def stripe_lock(self, digest: str) -> _FlockStripe:
        return _FlockStripe(self, int(digest[:4], 16) % _STRIPES)


class _FlockStripe:
    """Cross-process creation lock on one of the region's lock files.

    Re-entrant per thread (a cached function calling another whose key falls in the same stripe).
    Only a thread's outermost creation waits for a stripe: a nested one that finds its stripe taken
    computes without it, so two threads or processes never wait on each other in a cycle.
    Waits are bounded by ``lock_timeout``.
    """

    def __init__(self, store: FileStore, stripe: int) -> None:
        self.store, self.stripe = store, stripe
        self.fd: int | None = None

    def acquire(self, wait: bool = True) -> bool:
        held: set[int] = self.store._held.__dict__.setdefault("stripes", set())
        if self.stripe in held:
            return True
        folder = self.store.root / ".locks"
        folder.mkdir(parents=True, exist_ok=True)
        fd = os.open(folder / f"{self.stripe:02d}.lock", os.O_CREAT | os.O_RDWR, 0o644)
        deadline = time.monotonic() + self.store.lock_timeout
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if held:  # nested in another creation: waiting here could close a cycle with a thread
                    os.close(fd)  # that holds our stripe and waits for ours; compute unlocked instead
                    return wait
                if not wait:
                    os.close(fd)
                    return False
                if time.monotonic() > deadline:
                    os.close(fd)
                    return True  # give up waiting: compute without the cross-process lock
                time.sleep(0.01)
        self.fd = fd
        held.add(self.stripe)
        return True

    def release(self) -> None:
        if self.fd is not None:
            self.store._held.stripes.discard(self.stripe)
            fcntl.flock(self.fd, fcntl.LOCK_UN)
            os.close(self.fd)
            self.fd = None


class _CreationLock:
    """In-process lock on the exact key, then the cross-process stripe."""

    def __init__(self, local: NameLock, stripe: _FlockStripe) -> None:
        self.local, self.stripe = local, stripe

    def acquire(self, wait: bool = True) -> bool:
        if not self.local.acquire(wait):
            return False
        if self.stripe.acquire(wait):
            return True
        self.local.release()
        return False

    def release(self) -> None:
        try:
            self.stripe.release()
        finally:
            self.local.release()


class FileNamespaceManager(Backend):
    store_class = FileStore

    def __init__(self, namespace: str, store: Any = None, **beaker_options: Any) -> None:
        super().__init__(namespace, store, **beaker_options)
        self.folder = self.store.root / keys.safe_namespace(namespace, 100).replace("/", "_")

    def _digest(self, key: Hashable) -> str:
        return hashlib.blake2b(str(key).encode("utf-8", "surrogatepass"), digest_size=20).hexdigest()

    def path(self, key: Hashable) -> Path:
        d = self._digest(key)
        return self.folder / d[:2] / d[2:4] / (d + _SUFFIX)

    def wire_key(self, key: Hashable) -> str:
        return str(self.path(key))

    def get_entry(self, key: Hashable) -> Entry | None:
        path = self.path(key)
        try:
            f = open(path, "rb")  # noqa: SIM115 - closed by the with below; a miss is no error
        except FileNotFoundError:
            return None
        with f:
            stored_key, stored_at, ttl = pickle.load(f)
            if stored_key != str(key):  # a digest collision or a foreign file: never a wrong value
                return None
            header = (stored_at, ttl, None)
            if not is_servable(header, time.time(), self.store.stale):
                _unlink(path)
                return None
            return (stored_at, ttl, pickle.load(f))

    def set_entry(self, key: Hashable, entry: Entry) -> None:
        path = self.path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
        try:
            with os.fdopen(fd, "wb") as f:
                pickle.dump((str(key), entry[0], entry[1]), f, protocol=5)
                pickle.dump(entry[2], f, protocol=5)
                if self.store.fsync:
                    f.flush()
                    os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException:
            _unlink(Path(tmp))
            raise

    def delete_entry(self, key: Hashable) -> None:
        _unlink(self.path(key))

    def do_remove(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)

    def keys(self) -> list[Any]:
        found = []
        for path in self.store.entry_files(self.folder):
            try:
                with open(path, "rb") as f:
                    found.append(pickle.load(f)[0])
            except (OSError, pickle.UnpicklingError, EOFError, IndexError):
                continue
        return found

    def get_creation_lock(self, key: Hashable) -> _CreationLock:
        local = NameLock(identifier=(str(self.store.root), self.namespace, key), reentrant=True)
        return _CreationLock(local, self.store.stripe_lock(self._digest(key)))


def _unlink(path: Path) -> None:
    try:
        path.unlink()
    except FileNotFoundError:
        pass
