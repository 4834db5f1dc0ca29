"""Throttled logging: the first problem of a subject is logged at once, then at most one line per
:data:`LOG_EVERY` seconds with a count of what was not logged (a failure never floods the log).
:func:`shown` puts a value read from a server or a file into such a line."""

from __future__ import annotations

import logging
import time
from typing import Any

log = logging.getLogger("regions")

#: Seconds between two log lines of one subject (the first is logged at once).
LOG_EVERY = 10.0


class Throttle:
    """Log the first problem at once, then at most one line per ``every`` seconds with a count."""

    def __init__(self, prefix: str, every: float = LOG_EVERY) -> None:
        self.prefix = prefix
        self.every = every
        self.logged_at = -every
        self.unlogged = 0

    def warning(self, message: str, *args: Any) -> None:
        now = time.monotonic()
        if now - self.logged_at < self.every:
            self.unlogged += 1
            return
        more, self.unlogged, self.logged_at = self.unlogged, 0, now
        suffix = f" ({more} more problem(s) since the last report)" if more else ""
        log.warning("%s" + message + suffix, self.prefix, *args)


def shown(raw: bytes | str | None, limit: int = 40) -> str:
    """``raw`` as a log line shows what a server or a file held: escaped (``repr``), at most
    ``limit`` bytes of it, and its size when cut short. A value written by something else may be
    anything: never the whole of it, never a control character, in a log line."""
    if raw is None:
        return "nothing"
    if isinstance(raw, str):
        raw = raw.encode("utf-8", "surrogateescape")
    if len(raw) <= limit:
        return repr(bytes(raw))
    return f"{bytes(raw[:limit])!r}... ({len(raw)} bytes)"
