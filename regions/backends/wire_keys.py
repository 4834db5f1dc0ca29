"""Keys for servers that take text keys (memcached, Redis): printable ASCII without spaces, at most
``limit`` bytes; longer or unsafe parts are replaced by a blake2b digest, so any namespace and
argument text becomes a valid key, short enough for an entry's seal (:mod:`.sealed`)."""

from __future__ import annotations

import hashlib
import re

_UNSAFE = re.compile(r"[^\x21-\x7e]")


def digest(text: str) -> str:
    """160-bit blake2b of ``text``, hex."""
    return hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=20).hexdigest()


def is_safe(key: str, limit: int | None) -> bool:
    """Printable ASCII without whitespace, and within ``limit`` bytes."""
    if not (key.isascii() and key.isprintable()) or " " in key:
        return False
    return limit is None or len(key) <= limit


def safe_namespace(namespace: str, limit: int) -> str:
    """``namespace`` itself if safe and short, else a readable stem plus its digest."""
    if is_safe(namespace, limit):
        return namespace
    stem = _UNSAFE.sub("_", namespace.encode("ascii", "replace").decode())[:80]
    return f"{stem}~{digest(namespace)[:16]}"


def guarded(namespace: str, argpart: str, limit: int) -> str:
    """``namespace:argpart``, or ``namespace:#<digest of argpart>`` when too long or unsafe.

    Encoded argument parts never start with ``#``, so a digested key cannot equal a plain one.
    """
    key = f"{namespace}:{argpart}"
    if is_safe(key, limit):
        return key
    return f"{safe_namespace(namespace, limit - 42)}:#{digest(argpart)}"
