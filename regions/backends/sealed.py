"""The bytes of an entry on a shared server (memcached, Redis), and of a lease's placeholder.

An item holds ``R1`` + a 32-byte tag + the pickle of the entry tuple (or of a memcached head of
parts): the tag (:mod:`regions.signing`) covers the key and the pickle, so nothing is unpickled
before it is proven ours, and an entry copied to another key is rejected. Keys are at most 255
bytes (:mod:`.wire_keys` keeps them within 250). A lease's placeholder is :data:`LEASE_MARK` and a
random token: never unpickled, a miss for every reader.
"""

from __future__ import annotations

import pickle
from typing import Any

from ..signing import TAG_SIZE, RejectedEntry, Signer

MAGIC = b"R1"
#: Where the pickle starts: after the magic and the tag.
PICKLE_AT = 2 + TAG_SIZE
#: A lease's placeholder: this mark, its format (1) and a random token. No sealed entry starts so
#: (they start with ``R1``); readers take it for a miss, and nothing unpickles it.
LEASE_MARK = b"RL1:"


class Placeholder(Exception):
    """Raised by :func:`unseal` for a lease's placeholder: the readers return a miss."""


def seal(signer: Signer, wire: str, data: bytes) -> bytes:
    """``R1`` + tag + pickle: the tag covers the key, so an entry copied to another key fails."""
    key = wire.encode()  # at most 250 bytes: one length byte keeps key and data apart
    return MAGIC + signer.tag(bytes((len(key),)) + key, data) + data


def unseal(signer: Signer, key: bytes, blob: bytes) -> Any:
    """The entry in ``blob`` read under ``key`` (encoded), if its tag is ours."""
    if blob[:2] != MAGIC or len(blob) < PICKLE_AT:
        if blob[: len(LEASE_MARK)] == LEASE_MARK:
            raise Placeholder
        raise RejectedEntry("an entry without a tag (planted, or written before signing)")
    data = memoryview(blob)[PICKLE_AT:]
    if not signer.check(blob[2:PICKLE_AT], bytes((len(key),)) + key, data):
        raise RejectedEntry("an entry whose tag does not match its key and bytes")
    return pickle.loads(data)
