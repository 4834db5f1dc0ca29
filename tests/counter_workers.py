"""Another process of a deployment, for tests/test_memcached_counters.py (spawned: everything a child
runs is a top-level function here).

:func:`run` builds a manager from the test's settings in a fresh process (no connection made yet),
makes one invalidation, and reports what it returned and every warning the ``regions`` logger
wrote meanwhile.
"""

from __future__ import annotations

import logging
import traceback
from typing import Any


class _Lines(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


def run(config: dict[str, Any], key_prefix: str, secret: str, op: str, arg: Any, out: Any) -> None:
    """``op``: ``"invalidate_tags"`` (``arg``: the tags), ``"clear"`` or ``"invalidate"`` (``arg``:
    the region; ``invalidate`` deletes the key ``"k"``). Puts ``("ok", result, log lines)`` or
    ``("error", traceback, [])`` on ``out``."""
    import regions

    lines = _Lines()
    logger = logging.getLogger("regions")
    logger.addHandler(lines)
    logger.setLevel(logging.WARNING)
    manager = regions.CacheManager(config, key_prefix=key_prefix, secret=secret)
    try:
        if op == "invalidate_tags":
            result = manager.invalidate_tags(*arg)
        elif op == "clear":
            result = manager[arg].clear()
        else:
            result = manager[arg].delete("k")
        out.put(("ok", result, lines.lines))
    except BaseException:
        out.put(("error", traceback.format_exc(), lines.lines))
    finally:
        manager.close()
