"""memcached's expiry argument: seconds up to 30 days, a Unix time beyond (memcached's rule), and
never past :data:`LATEST_EXPIRY` (a 32-bit Unix time: memcached takes a later one, says
``STORED``, and drops the item at once)."""

from __future__ import annotations

import math
import time

THIRTY_DAYS = 30 * 24 * 3600
#: The latest expiry memcached takes, 2038-01-19 03:14:07 UTC.
LATEST_EXPIRY = 2**31 - 1


def expiry(ttl: float | None, stale: float, now: float | None = None) -> int:
    """The expiry argument of an entry living ``ttl`` seconds (``None``: forever) plus ``stale``;
    :data:`LATEST_EXPIRY` when it would end later (capped)."""
    if ttl is None:
        return 0
    seconds = ttl + stale
    if seconds <= THIRTY_DAYS:
        return max(1, math.ceil(seconds))
    at = int(time.time() if now is None else now)
    if seconds < LATEST_EXPIRY - at:  # (an infinite one is not)
        return at + math.ceil(seconds)
    return LATEST_EXPIRY


def asked(ttl: float, stale: float) -> float:
    """The seconds memcached was asked to keep an entry living ``ttl`` seconds plus ``stale``:
    what :func:`expiry` sends (whole seconds), before any cap. The server's seconds left (``mg``'s
    ``t``) subtracted from it is the entry's age, on no host's wall clock."""
    seconds = ttl + stale
    return max(1, math.ceil(seconds)) if seconds <= THIRTY_DAYS else seconds


def longest_timeout(stale: float, now: float | None = None) -> int:
    """The longest TIMEOUT whose entries, stored now, memcached keeps for all of it (and ``stale``)."""
    return int(LATEST_EXPIRY - (time.time() if now is None else now) - stale)
