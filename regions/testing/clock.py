"""How the contract's expiry tests let time pass: :class:`ExpiryClock`."""

from __future__ import annotations

import time
from collections.abc import Callable

#: A real wait polls this often; a fake clock moves on by this much per look.
STEP = 0.05


class ExpiryClock:
    """The time an expiry test lets pass, on one of two clocks.

    Fake (``local=True``, the backend judges expiry by this process's ``time.time``: memory, file,
    request, a synced region's memory): the clock is ``time.time`` plus an offset the test moves on,
    installed in place of ``time.time`` for the test, so a second passes in no time. Real
    (``local=False``: a server ages the entries, as memcached and Redis do): the test waits, polling,
    for no longer than the entry needs.
    """

    def __init__(self, local: bool) -> None:
        self.local = local
        self.offset = 0.0
        self._real = time.time

    def __call__(self) -> float:
        """``time.time()``, moved on by what :meth:`sleep` and :meth:`until` let pass."""
        return self._real() + self.offset

    def sleep(self, seconds: float) -> None:
        """Let ``seconds`` pass: move the fake clock on, or sleep."""
        if self.local:
            self.offset += seconds
        else:
            time.sleep(seconds)

    def until(self, done: Callable[[], bool], within: float, what: str = "not done") -> float:
        """Let time pass in steps of :data:`STEP` until ``done()`` is true (checked first at once);
        return the seconds that passed. ``AssertionError`` (``what``) when ``within`` seconds pass first."""
        start = self() if self.local else time.monotonic()
        while True:
            passed = (self() if self.local else time.monotonic()) - start
            if done():
                return passed
            assert passed < within, f"{what} after {within} s"
            self.sleep(STEP)
