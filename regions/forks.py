"""What a forked child does for objects holding its parent's state (sockets, threads, locks, breakers):
each one's ``after_fork``, every one of them even when another's raises.

``os.register_at_fork`` runs each registered hook on its own, but a hook that loops over many objects
(every store, every fleet) stops at the first exception: the objects after it in the loop would keep
their parent's connections and breakers, and which ones would depend on the order of a ``WeakSet``.
:func:`reset_each` resets them one by one; a failure is logged once, naming the object, and the
others are reset all the same."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterable
from typing import Protocol, TypeVar

from .throttle import loggable

log = logging.getLogger("regions")


class Resettable(Protocol):
    def after_fork(self) -> None: ...


R = TypeVar("R", bound=Resettable)


def reset_each(objects: Iterable[R], describe: Callable[[R], str]) -> int:
    """Call every object's ``after_fork`` (in a forked child); each one that raises is logged, once,
    as ``describe(obj)`` with its exception, and the next ones are still reset. How many failed."""
    failed = 0
    for obj in list(objects):
        try:
            obj.after_fork()
        except Exception as exc:  # a cache's reset never stops the others (nor the child)
            failed += 1
            try:
                name = describe(obj)
            except Exception:
                name = f"a {type(obj).__name__}"
            log.warning(
                "%s: its reset in forked process %d failed (%s: %s); this process may still use its "
                "parent's connections or breaker for it (the other caches were reset)",
                loggable(name), os.getpid(), type(exc).__name__, loggable(exc),
            )
    return failed
