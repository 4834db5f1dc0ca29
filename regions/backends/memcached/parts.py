"""Values larger than one memcached item: the pickle is split into parts, written first (on the head's
node, under keys new for each write), then a head naming them is stored as the entry itself.

The head carries the parts' count, size, a blake2b digest of the whole pickle and the write's token:
a reader gets every part or none (an evicted part is a miss, never a partial value), and parts that
do not match their head's digest are rejected, never unpickled.
"""

from __future__ import annotations

import hashlib
import pickle
import secrets
from typing import TYPE_CHECKING, NamedTuple

from ...signing import RejectedEntry
from ..contract import Entry
from .keys import digest
from .nodes import Node

if TYPE_CHECKING:
    from . import MemcachedStore


class _Chunked(NamedTuple):
    """Head of an entry too large for one memcached item: the pickle is split into ``parts`` items
    named after ``token``, new for each write (concurrent writers never mix their parts).

    Stored pickled in heads: ``regions.backends.memcached`` imports it under this name, so heads
    written before it moved here still read."""

    parts: int
    size: int
    digest: str
    token: str = ""


def _checksum(data: bytes) -> str:
    return hashlib.blake2b(data, digest_size=16).hexdigest()


class Parts:
    """The split values of one namespace (``namespace``: its key-safe form) of ``store``."""

    def __init__(self, namespace: str, store: MemcachedStore) -> None:
        self.namespace = namespace
        self.store = store

    def keys(self, wire: str, head: _Chunked) -> list[str]:
        """The keys of the parts that ``head``, stored under ``wire``, names."""
        stem = f"{self.namespace}:#parts:{digest(wire)}:{head.token}"
        return [f"{stem}:{i}" for i in range(head.parts)]

    def put(self, node: Node, wire: str, data: bytes, expire: int) -> _Chunked:
        """Store ``data`` (the entry's pickle) in parts on ``node``; the head to store under ``wire``."""
        size = self.store.item_size
        head = _Chunked(-(-len(data) // size), len(data), _checksum(data), secrets.token_hex(8))
        pieces = {k: data[i * size : (i + 1) * size] for i, k in enumerate(self.keys(wire, head))}
        failed = node.call("set_many", pieces, expire=expire, noreply=False)
        if failed:
            raise ValueError(f"region {self.store.region!r}: memcached did not store {len(failed)} parts")
        return head

    def get(self, node: Node, wire: str, head: _Chunked) -> Entry | None:
        """The entry ``head`` names: ``None`` when a part is missing, raises when one was altered."""
        names = self.keys(wire, head)
        found = node.call("get_many", names)
        if len(found) != head.parts:
            return None  # a part was evicted: a miss, never a partial value
        data = b"".join(found[k] for k in names)
        if len(data) != head.size or _checksum(data) != head.digest:
            raise RejectedEntry("parts that do not match the digest in their head")
        return pickle.loads(data)
