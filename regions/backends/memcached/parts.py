"""Values larger than one memcached item: the pickle is split into parts, written first (on the head's
node, under keys new for each write), then a head naming them is stored as the entry itself.

The head carries the parts' count, size, a blake2b digest of the whole pickle and the write's token:
a reader gets every part or none (an evicted part is a miss, never a partial value), and parts that
do not match their head's digest are rejected, never unpickled.

A head is stored as plain data, ``("parts", 1, count, size, digest, token)``: a marker, the head's
format, then its fields; never an instance of a class, so no module path is part of the storage
format. A whole entry's first item is its time (a float), so ``stored[0] == HEAD_MARK`` tells them
apart.
"""

from __future__ import annotations

import hashlib
import pickle
import secrets
from typing import TYPE_CHECKING, Any, NamedTuple

from ...signing import RejectedEntry
from ..contract import Entry
from .keys import digest
from .nodes import Node

if TYPE_CHECKING:
    from . import MemcachedStore

#: First item of a stored head.
HEAD_MARK = "parts"
#: Second item: the layout of the items after it.
HEAD_FORMAT = 1


class Head(NamedTuple):
    """A head as this code reads it: the pickle is split into ``parts`` items named after
    ``token``, new for each write (concurrent writers never mix their parts)."""

    parts: int
    size: int
    digest: str
    token: str

    def data(self) -> tuple[Any, ...]:
        """The head as stored (pickled and sealed like an entry)."""
        return (HEAD_MARK, HEAD_FORMAT, *self)

    @classmethod
    def read(cls, data: tuple[Any, ...]) -> Head | None:
        """The head stored as ``data``, or ``None`` when it is of another format."""
        if len(data) != 6 or data[0] != HEAD_MARK or data[1] != HEAD_FORMAT:
            return None
        return cls(*data[2:])


def _checksum(data: bytes) -> str:
    return hashlib.blake2b(data, digest_size=16).hexdigest()


class Parts:
    """The split values of one namespace (``namespace``: its key-safe form) of ``store``."""

    def __init__(self, namespace: str, store: MemcachedStore) -> None:
        self.namespace = namespace
        self.store = store

    def keys(self, wire: str, head: Head) -> list[str]:
        """The keys of the parts that ``head``, stored under ``wire``, names."""
        stem = f"{self.namespace}:#parts:{digest(wire)}:{head.token}"
        return [f"{stem}:{i}" for i in range(head.parts)]

    def put(self, node: Node, wire: str, data: bytes, expire: int) -> tuple[Any, ...]:
        """Store ``data`` (the entry's pickle) in parts on ``node``; the head to store under ``wire``,
        as data."""
        size = self.store.item_size
        head = Head(-(-len(data) // size), len(data), _checksum(data), secrets.token_hex(8))
        pieces = {k: data[i * size : (i + 1) * size] for i, k in enumerate(self.keys(wire, head))}
        failed = node.call("set_many", pieces, expire=expire, noreply=False)
        if failed:
            raise ValueError(f"region {self.store.region!r}: memcached did not store {len(failed)} parts")
        return head.data()

    def get(self, node: Node, wire: str, stored: tuple[Any, ...]) -> Entry | None:
        """The entry that the head ``stored`` names: ``None`` when a part is missing (or the head is
        of another format), raises when a part was altered."""
        head = Head.read(stored)
        if head is None:
            return None
        names = self.keys(wire, head)
        found = node.call("get_many", names)
        if len(found) != head.parts:
            return None  # a part was evicted: a miss, never a partial value
        data = b"".join(found[k] for k in names)
        if len(data) != head.size or _checksum(data) != head.digest:
            raise RejectedEntry("parts that do not match the digest in their head")
        return pickle.loads(data)
