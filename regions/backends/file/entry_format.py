"""The bytes of one file-region entry, tagged so that nothing in it is unpickled before its tag is
checked (:mod:`regions.signing`).

Layout::

    MAGIC | value pickle | header pickle | len(header): 4 bytes | tag of the header: 32 bytes

``MAGIC`` is ``b"RF"`` and :data:`VERSION` in digits. The header is plain data, ``(namespace, key,
stored_at, ttl, value size, value tag)``. The value is streamed to disk (pickle protocol 5 writes
large buffers directly) and tagged on the way; the header, tagged last, carries the value's tag. A
reader checks the header's tag first, then the namespace, key and lifetime, and only for a live
entry of its own key reads the value and checks its tag: an expired entry costs no read of its
value, and a planted or altered file is never unpickled.

:data:`VERSION` is the storage format's: these bytes and where they are kept (it marks the names of
namespace folders, :func:`.layout.folder_name`). A change to either bumps it, so that entries of
another version are never read (another folder: misses) and culls remove them (another magic).
"""

from __future__ import annotations

import mmap
import os
import pickle
from typing import IO, Any

from ...errors import UnstorableValue
from ...signing import TAG_SIZE, RejectedEntry, Signer

#: Version 1: ``b"RF1"`` entries in namespace folders without a version mark. 2: in marked folders,
#: two levels of entry folders. 3: one level (:mod:`.layout`).
VERSION = 3
MAGIC = b"RF%d" % VERSION
_TRAILER = 4 + TAG_SIZE
#: Files up to this size are read in one call; larger ones are mapped (no second copy in memory).
READ_WHOLE = 1 << 18

Header = tuple[str, str, float, float | None, int, bytes]

#: A lease's placeholder file (:meth:`~regions.backends.file.FileNamespaceManager.lease`): this
#: mark, its format (1) and a random token. No entry starts so; readers take it for a miss.
PLACEHOLDER = b"RFL1:"


def placeholder() -> bytes:
    """The bytes of a new placeholder (the token tells two of them apart)."""
    return PLACEHOLDER + os.urandom(16).hex().encode()


def is_placeholder(data: bytes | memoryview) -> bool:
    return bytes(data[: len(PLACEHOLDER)]) == PLACEHOLDER


class _TaggingWriter:
    """A file object for ``pickle.dump`` that tags and counts the bytes on their way to disk."""

    __slots__ = ("f", "running", "size")

    def __init__(self, f: IO[bytes], signer: Signer) -> None:
        self.f, self.running, self.size = f, signer.running(b"v"), 0

    def write(self, data: Any) -> int:
        # released on return, even on a failure: pickle reuses and frees the buffers it passes here
        with memoryview(data) as view:
            self.running.update(view)
            self.size += view.nbytes
            return self.f.write(view)


def write(f: IO[bytes], signer: Signer, namespace: str, key: str, stored_at: float, ttl: float | None,
          value: Any, region: str = "") -> int:
    """Write one entry to ``f``; returns its size in bytes (:class:`UnstorableValue` when ``value``
    cannot be pickled)."""
    f.write(MAGIC)
    out = _TaggingWriter(f, signer)
    try:
        pickle.dump(value, out, protocol=5)
    except OSError:
        raise
    except Exception as exc:
        raise UnstorableValue(region, value, exc) from exc
    header = pickle.dumps((namespace, key, stored_at, ttl, out.size, out.running.digest()), protocol=5)
    f.write(header)
    f.write(len(header).to_bytes(4, "big"))
    f.write(signer.tag(b"h", header))
    return len(MAGIC) + out.size + len(header) + _TRAILER


def contents(f: IO[bytes]) -> memoryview:
    """The bytes of an open entry file: read whole when small, else mapped."""
    return read_fd(f.fileno())


def read_fd(fd: int) -> memoryview:
    """:func:`contents` of a raw descriptor (the hit path opens none of Python's file objects)."""
    size = os.fstat(fd).st_size
    if size > READ_WHOLE:
        return memoryview(mmap.mmap(fd, 0, access=mmap.ACCESS_READ))
    data = os.read(fd, size)
    while len(data) < size:  # a regular file is read whole at once; be safe anyway
        more = os.read(fd, size - len(data))
        if not more:
            break
        data += more
    return memoryview(data)


def header(data: memoryview, signer: Signer) -> Header:
    """The checked header of an entry's bytes; :class:`RejectedEntry` when it is not ours."""
    size = len(data)
    if size < len(MAGIC) + _TRAILER or data[: len(MAGIC)] != MAGIC:
        raise RejectedEntry("a file that is not a tagged entry (planted, or written before signing)")
    length = int.from_bytes(data[-_TRAILER:-TAG_SIZE], "big")
    start = size - _TRAILER - length
    if start < len(MAGIC):
        raise RejectedEntry("a truncated entry file")
    raw = data[start : size - _TRAILER]
    if not signer.verify(data[-TAG_SIZE:], b"h", raw):
        raise RejectedEntry("an entry file whose tag does not match")
    found = pickle.loads(raw)
    if found[4] != start - len(MAGIC):
        raise RejectedEntry("an entry file whose value was cut or extended")
    return found


def value(data: memoryview, head: Header, signer: Signer) -> Any:
    """The value of an entry whose header :func:`header` checked."""
    raw = data[len(MAGIC) : len(MAGIC) + head[4]]
    if not signer.verify(head[5], b"v", raw):
        raise RejectedEntry("an entry file whose value does not match its tag")
    return pickle.loads(raw)


def header_of(f: IO[bytes], signer: Signer) -> Header | None:
    """The checked header of an open entry file, or ``None`` (not ours, damaged, truncated)."""
    try:
        return header(contents(f), signer)
    except Exception:  # whatever a damaged file makes the unpickling of a tagged header raise
        return None


def read_header(path: str, signer: Signer) -> Header | None:
    """:func:`header_of` the entry file at ``path`` (``None`` too when it is gone)."""
    try:
        with open(path, "rb") as f:
            return header_of(f, signer)
    except OSError:
        return None
