"""The bytes of a memcached entry, and of a lease's placeholder: the shared seal of
:mod:`regions.backends.sealed` (``R1`` + tag + pickle, checked before anything is unpickled).

:data:`FORMAT` is part of every entry's key, so entries of an earlier format are misses, never
rejected entries.
"""

from __future__ import annotations

from ..sealed import LEASE_MARK, MAGIC, PICKLE_AT, Placeholder, seal, unseal

__all__ = ["FORMAT", "LEASE_MARK", "MAGIC", "PICKLE_AT", "Placeholder", "seal", "unseal"]

#: Storage format of entries (the sealed pickle of an entry or of a head of parts), part of every
#: entry's key. ``F`` is no hex digit: no key of the format before it (no mark) can equal one.
FORMAT = "F2"
