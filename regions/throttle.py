"""Throttled logging: the first problem of a subject is logged at once, then at most one line per
:data:`LOG_EVERY` seconds with a count of what was not logged (a failure never floods the log).

Every text put into such a line goes through :func:`loggable`: exceptions and server answers can
carry bytes planted in a server or a folder, which must neither forge log lines nor drive the
terminal that shows them. :func:`shown` describes a raw value read from a server or a file (what a
counter held) for such a line."""

from __future__ import annotations

import logging
import time
from typing import Any

log = logging.getLogger("regions")

#: Seconds between two log lines of one subject (the first is logged at once).
LOG_EVERY = 10.0

#: Characters of one text put into a log line, at most (escapes included); the rest is cut.
LOG_TEXT_LIMIT = 200


def loggable(value: Any, limit: int = LOG_TEXT_LIMIT) -> str:
    """``str(value)`` fit for one log line: every unprintable character (line breaks, ESC and the
    other controls, bidirectional overrides, line separators) escaped as ``\\n``, ``\\x1b``,
    ``\\u202e``, and cut after ``limit`` characters with a count of those cut."""
    try:
        text = str(value)
    except Exception:
        return f"<a {loggable(type(value).__name__)} that cannot be shown>"
    if len(text) <= limit and text.isprintable():
        return text
    out: list[str] = []
    size = 0
    for n, char in enumerate(text):
        if not char.isprintable():
            char = char.encode("unicode_escape").decode("ascii")
        size += len(char)
        if size > limit:
            return f"{''.join(out)}... ({len(text) - n} more characters)"
        out.append(char)
    return "".join(out)


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
        texts = [a if isinstance(a, (int, float)) else loggable(a) for a in args]
        log.warning("%s" + message + suffix, self.prefix, *texts)


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
