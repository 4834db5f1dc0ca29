"""Creation locks of a file region (:meth:`~regions.backends.file.FileNamespaceManager.shared_lock`).

One per key, a POSIX record lock on one byte of the region's single lock file
``LOCATION/.locks/keys.lock``, at an offset taken from 60 bits of a digest of the namespace and key.
A computation blocks callers of its own key only, in every process on the host, and no lock ever
adds a file. Record locks belong to a process, so each process keeps the file open once for its
lifetime (closing any descriptor of it would drop all of the process's locks on it) and tracks the
offsets its threads hold; a forked child starts with none.
"""

from __future__ import annotations

import errno
import fcntl
import os
import threading

from ..contract import poll
from .folders import make_private_dirs


class LockFile:
    """One open lock file of this process and the byte offsets its threads hold in it."""

    __slots__ = ("fd", "held", "mutex")

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.held: set[int] = set()
        self.mutex = threading.Lock()


#: Open lock files of this process by (device, inode).
_LOCK_FILES: dict[tuple[int, int], LockFile] = {}
_LOCK_FILES_MUTEX = threading.Lock()


def _forget_parent_locks() -> None:
    """In a forked child: record locks are not inherited; the descriptors are, and stay usable."""
    global _LOCK_FILES_MUTEX
    _LOCK_FILES_MUTEX = threading.Lock()
    for lock_file in _LOCK_FILES.values():
        lock_file.held = set()
        lock_file.mutex = threading.Lock()


os.register_at_fork(after_in_child=_forget_parent_locks)


def _opened(lock_path: str) -> LockFile | None:
    """The lock file this process has open at ``lock_path``; ``None`` if none (or no file)."""
    try:
        st = os.stat(lock_path)
    except FileNotFoundError:
        return None
    return _LOCK_FILES.get((st.st_dev, st.st_ino))


def open_lock_file(lock_path: str) -> LockFile:
    """This process's open lock file at ``lock_path`` (made, or opened again, when needed)."""
    found = _opened(lock_path)
    if found is not None:
        return found
    with _LOCK_FILES_MUTEX:  # one descriptor per file and process: closing one drops all locks
        found = _opened(lock_path)
        if found is not None:
            return found
        make_private_dirs(os.path.dirname(lock_path))
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        st = os.fstat(fd)
        # Another inode than the one stat() saw (replaced meanwhile) may already be open: keep
        # the registered descriptor and leave this one open, never close it.
        return _LOCK_FILES.setdefault((st.st_dev, st.st_ino), LockFile(fd))


class KeyLock:
    """The cross-process creation lock of one key: byte ``offset`` of the lock file ``lock_path``."""

    __slots__ = ("lock_path", "offset", "file")

    def __init__(self, lock_path: str, offset: int) -> None:
        self.lock_path, self.offset = lock_path, offset
        self.file: LockFile | None = None

    def acquire(self, timeout: float) -> bool:
        """Take the lock, polling with a growing pause for up to ``timeout`` seconds (0: try once)."""
        return poll(self._try, timeout, 0.001, 0.05)

    def _try(self) -> bool:
        lock_file = open_lock_file(self.lock_path)
        with lock_file.mutex:
            if self.offset not in lock_file.held and _try_lockf(lock_file.fd, self.offset):
                lock_file.held.add(self.offset)
                self.file = lock_file
                return True
        return False

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
