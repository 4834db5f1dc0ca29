"""memcached keys: the shared rules of :mod:`regions.backends.wire_keys` (printable ASCII without
spaces, at most 250 bytes; longer or unsafe parts replaced by a digest)."""

from ..wire_keys import digest, guarded, is_safe, safe_namespace

__all__ = ["digest", "guarded", "is_safe", "safe_namespace"]
