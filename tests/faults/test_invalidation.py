"""A failed invalidation is never silent, and never lets the old value come back.

The region talks to a real memcached through a TCP proxy (:mod:`tests.faults.proxy`) that can drop
all traffic (a link that loses packets: connections stay open, nothing answers) or reset every
connection and refuse new ones. After an entry is cached and the underlying data changed, with the
link broken:

* ``f.invalidate(1)``, ``f.invalidate_all()``, ``region.clear()`` return ``False`` and
  ``f.refresh(1)`` returns the new value, each within about one ``timeout``;
* the failure is logged (logger ``"regions"``);
* once the link heals, ``f(1)`` returns the new value within 5 s and from then on, and never the
  old one, not during the outage, not during the heal, not after: the failed invalidation was
  retried before the server's reads were served again. Another process (a fresh manager with the
  same key_prefix, straight to the server) sees the new value too.

With ``OPTIONS raise_errors=True`` the failed invalidation raises instead (and still holds).
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.faults.conftest import FaultyMemcached
from tests.faults.proxy import Proxy

#: ``timeout`` and ``connect_timeout`` of the regions under test (seconds).
TIMEOUT = 0.5
RETRY_INTERVAL = 0.3
#: A failed operation returns within this (one timeout, plus scheduling margin on a busy host).
BOUND = 2 * TIMEOUT + 0.5
#: The issue's bound: hits resume within 5 s of the link healing.
HEAL = 5.0

OLD = "v1"
NEW = "v2"


@pytest.fixture
def server(faulty_memcached: Callable[..., FaultyMemcached]) -> Iterator[FaultyMemcached]:
    """A real memcached; SIGKILLed at the end (it takes 1 s to exit on SIGTERM)."""
    srv = faulty_memcached()
    yield srv
    srv.kill()


def mc_config(address: str, **options: Any) -> dict[str, Any]:
    opts = {"timeout": TIMEOUT, "connect_timeout": TIMEOUT, "retry_interval": RETRY_INTERVAL, **options}
    return {"mc": {"BACKEND": "memcached", "LOCATION": address, "TIMEOUT": 300, "OPTIONS": opts}}


class Data:
    """The data behind the cached function: a version the test changes, and a computation count."""

    def __init__(self) -> None:
        self.version = OLD
        self.computed = 0

    def load(self, x: int) -> tuple[int, str]:
        self.computed += 1
        return (x, self.version)


class Setup:
    """A memcached region reached through a proxy; ``f`` and its async twin ``af`` cached in it,
    with ``f(1)`` and ``af(1)`` stored. ``config(address, **options)`` makes the settings of the
    region, named "mc" (tests of other backends give theirs)."""

    config: Callable[..., dict[str, Any]] = staticmethod(mc_config)

    def __init__(
        self,
        server_address: str,
        link: Proxy,
        make_manager: Callable[..., Any],
        **options: Any,
    ) -> None:
        self.server_address = server_address
        self.link = link
        self.make_manager = make_manager
        self.options = options
        self.key_prefix = "inv" + uuid.uuid4().hex[:10]
        self.data = Data()
        self.manager = make_manager(self.config(link.address, **options), key_prefix=self.key_prefix)
        self.region = self.manager["mc"]
        self.f, self.af = self._decorate(self.manager, self.data)
        for _ in range(2):
            assert self.f(1) == (1, OLD)
            assert asyncio.run(self.af(1)) == (1, OLD)
        assert self.data.computed == 2, "the region does not cache through the proxy"
        assert link.forwarded > 0, "nothing went through the proxy"

    @staticmethod
    def _decorate(manager: Any, data: Data) -> tuple[Any, Any]:
        def load(x: int) -> tuple[int, str]:  # one qualname for every manager of this test
            return data.load(x)

        async def aload(x: int) -> tuple[int, str]:
            return data.load(x)

        return manager.region("mc")(load), manager.region("mc")(aload)

    @staticmethod
    def read(funcs: tuple[Any, Any], target: str) -> tuple[int, str]:
        """``f(1)`` (target "f") or ``await af(1)`` (target "af")."""
        f, af = funcs
        return f(1) if target == "f" else asyncio.run(af(1))

    def other_process_view(self, target: str = "f") -> tuple[int, str]:
        """``f(1)`` / ``af(1)`` as a fresh manager with the same key_prefix sees it, straight to the
        server."""
        manager = self.make_manager(self.config(self.server_address), key_prefix=self.key_prefix)
        return self.read(self._decorate(manager, self.data), target)

    def watch_heal(self, target: str = "f") -> tuple[float, int]:
        """Heal the link, then call ``f(1)`` (or ``af(1)``) until it is served by the cache again
        (at most ``HEAL`` s) and for 0.5 s more. Every result must be the new value.

        Returns (seconds until hits resumed, calls made)."""
        self.link.mode = "pass"
        healed = time.monotonic()
        hit_at: float | None = None
        calls = 0
        while True:
            now = time.monotonic()
            if hit_at is None and now > healed + HEAL:
                break
            if hit_at is not None and now > hit_at + 0.5:
                break
            before = self.data.computed
            try:
                value = self.read((self.f, self.af), target)
            except Exception:
                if not self.options.get("raise_errors"):
                    raise
                time.sleep(0.02)  # raise_errors: a read while the server is still marked down raises
                continue
            calls += 1
            assert value != (1, OLD), (
                f"the old value came back {time.monotonic() - healed:.2f} s after the link healed "
                f"(call {calls}): the failed invalidation was lost"
            )
            assert value == (1, NEW), value
            if hit_at is None and self.data.computed == before:
                hit_at = time.monotonic()
            time.sleep(0.02)
        assert hit_at is not None, f"{target}(1) was not served by the cache within {HEAL} s of the heal"
        return hit_at - healed, calls


def regions_warnings(caplog: pytest.LogCaptureFixture, within: float = 0.0) -> list[logging.LogRecord]:
    """The warnings of regions so far; with ``within``, once there is one, waiting that long at
    most. A failure is reported once, by whichever thread marked the server down: when another
    thread (the stats publisher, say) fails on the broken link at the same moment, its line may come
    a moment after the caller, finding the server down already, has returned."""
    deadline = time.monotonic() + within
    while True:
        found = [r for r in caplog.records if r.name.startswith("regions") and r.levelno >= logging.WARNING]
        if found or time.monotonic() >= deadline:
            return found
        time.sleep(0.01)


def _invalidate(s: Setup) -> Any:
    return s.f.invalidate(1)


def _refresh(s: Setup) -> Any:
    return s.f.refresh(1)


def _invalidate_all(s: Setup) -> Any:
    return s.f.invalidate_all()


def _clear(s: Setup) -> Any:
    return s.region.clear()


def _ainvalidate(s: Setup) -> Any:
    return asyncio.run(s.af.invalidate(1))


def _arefresh(s: Setup) -> Any:
    return asyncio.run(s.af.refresh(1))


def _ainvalidate_all(s: Setup) -> Any:
    return asyncio.run(s.af.invalidate_all())


#: The invalidations of the sync function ``f`` (one after another in one outage, below).
OPERATIONS: dict[str, Callable[[Setup], Any]] = {
    "invalidate": _invalidate,
    "refresh": _refresh,
    "invalidate_all": _invalidate_all,
    "clear": _clear,
}
#: Those of the async function ``af``.
ASYNC_OPERATIONS: dict[str, Callable[[Setup], Any]] = {
    "await af.invalidate": _ainvalidate,
    "await af.refresh": _arefresh,
    "await af.invalidate_all": _ainvalidate_all,
}
ALL_OPERATIONS = {**OPERATIONS, **ASYNC_OPERATIONS}


def expected(op: str) -> Any:
    """What ``op`` returns when it did not reach the server."""
    return (1, NEW) if op.endswith("refresh") else False


def target_of(op: str) -> str:
    """The function whose entry ``op`` invalidates: "f" or "af"."""
    return "af" if op in ASYNC_OPERATIONS else "f"


@pytest.mark.parametrize("fault", ["drop", "reset"])
@pytest.mark.parametrize("op", list(ALL_OPERATIONS))
def test_failed_invalidation_reports_and_holds_after_heal(
    op: str,
    fault: str,
    server: FaultyMemcached,
    proxy: Callable[[str], Proxy],
    make_manager: Callable[..., Any],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """One invalidation on a broken link: reported (return value and log), bounded in time, and in
    force once the link heals: ``f(1)`` (``af(1)`` for the async ones) never returns the old value
    again, here or elsewhere."""
    s = Setup(server.address, proxy(server.address), make_manager)
    caplog.set_level(logging.WARNING, logger="regions")
    caplog.clear()

    s.data.version = NEW  # the data changes, then the application invalidates
    s.link.mode = fault  # type: ignore[assignment]
    start = time.monotonic()
    result = ALL_OPERATIONS[op](s)
    took = time.monotonic() - start

    assert took < BOUND, f"{op} took {took:.2f} s on a broken link (timeout {TIMEOUT} s)"
    assert result == expected(op), f"{op} on a broken link returned {result!r}, not {expected(op)!r}"
    logged = regions_warnings(caplog, within=BOUND)
    assert logged, f"{op} failed on a broken link and nothing was logged"
    if fault == "drop":
        assert s.link.dropped > 0, "the proxy dropped nothing: the operation never tried the server"

    for _ in range(5):  # during the outage: the function's own (new) result, at once
        start = time.monotonic()
        assert s.read((s.f, s.af), target_of(op)) == (1, NEW)
        assert time.monotonic() - start < BOUND

    target = target_of(op)
    recovery, calls = s.watch_heal(target)
    assert s.other_process_view(target) == (1, NEW), "another process sees the old value after the heal"
    print(
        f"\n{op} over a link in {fault!r}: returned {result!r} in {took * 1000:.0f} ms, "
        f"{len(logged)} log line(s), hits resumed {recovery:.2f} s after the heal, "
        f"{calls} calls after the heal, 0 old values; stats {s.region.stats()}"
    )


def test_every_invalidation_of_one_outage_holds(
    server: FaultyMemcached,
    proxy: Callable[[str], Proxy],
    make_manager: Callable[..., Any],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The four invalidations one after another while the link drops traffic: only the first one
    waits (the server is then known to be down), each reports its failure, the failures are logged,
    and after the heal neither this process nor another one gets an old value."""
    s = Setup(server.address, proxy(server.address), make_manager)
    assert s.f(2) == (2, OLD)
    caplog.set_level(logging.WARNING, logger="regions")
    caplog.clear()

    s.data.version = NEW
    s.link.mode = "drop"
    took: dict[str, float] = {}
    results: dict[str, Any] = {}
    for op, call in OPERATIONS.items():
        start = time.monotonic()
        results[op] = call(s)
        took[op] = time.monotonic() - start
    assert results == {op: expected(op) for op in OPERATIONS}, results
    assert max(took.values()) < BOUND, took
    assert sum(took.values()) < BOUND + 0.5, f"more than one operation waited for the dead link: {took}"
    assert regions_warnings(caplog, within=BOUND), "four invalidations failed and nothing was logged"
    assert s.f(2) == (2, NEW)

    recovery, _ = s.watch_heal()
    assert s.f(2) == (2, NEW)
    assert s.other_process_view() == (1, NEW)
    text = " | ".join(r.getMessage() for r in regions_warnings(caplog))
    assert "invalidat" in text.lower(), f"the log never mentions the failed invalidations: {text}"
    print(f"\nfour invalidations over a dropping link: {took}; recovered in {recovery:.2f} s; log: {text}")


@pytest.mark.parametrize("op", list(ALL_OPERATIONS))
def test_failed_invalidation_raises_with_raise_errors(
    op: str,
    server: FaultyMemcached,
    proxy: Callable[[str], Proxy],
    make_manager: Callable[..., Any],
) -> None:
    """``OPTIONS raise_errors=True``: an invalidation that does not reach the server raises (within
    about one timeout) instead of returning False, and it still holds once the link heals: raising
    must not skip the retry (for ``refresh``: the old entry must not outlive the failed store)."""
    s = Setup(server.address, proxy(server.address), make_manager, raise_errors=True)
    s.data.version = NEW
    s.link.mode = "drop"
    start = time.monotonic()
    with pytest.raises(Exception) as caught:
        ALL_OPERATIONS[op](s)
    took = time.monotonic() - start
    assert took < BOUND, f"{op} took {took:.2f} s to raise"
    assert not isinstance(caught.value, (AssertionError, TypeError)), caught.value
    s.watch_heal(target_of(op))
    assert s.other_process_view(target_of(op)) == (1, NEW)


def test_thousands_of_failed_invalidations_all_hold(
    server: FaultyMemcached,
    proxy: Callable[[str], Proxy],
    make_manager: Callable[..., Any],
) -> None:
    """12,000 invalidations fail during one outage (more than a process can be expected to keep one
    by one): whatever the region keeps for the retry (each one, or a clear standing for them all),
    none of the 60 cached entries comes back after the heal, here or in another process.

    ``sync_interval`` is long: only the replay itself can make this process drop the counters it
    read before the outage (with the default 1 s, that held only when the loop was slow)."""
    s = Setup(server.address, proxy(server.address), make_manager, sync_interval=60)
    keys = range(60)
    for x in keys:
        assert s.f(x) == (x, OLD)
    s.data.version = NEW
    s.link.mode = "drop"
    budget = BOUND + 5  # the server is known to be down after the first one: no more waits
    start = time.monotonic()
    failed = 0
    for i, x in enumerate([*keys, *range(1000, 1000 + 12_000 - len(keys))]):
        failed += s.f.invalidate(x) is False
        took = time.monotonic() - start
        assert took < budget, f"{i + 1} invalidations took {took:.1f} s: they wait for the dead link"
    assert failed == 12_000, f"{12_000 - failed} invalidations over a dropping link did not report failure"

    s.link.mode = "pass"
    healed = time.monotonic()
    served: dict[int, tuple[int, str]] = {}
    while time.monotonic() < healed + HEAL:
        before = s.data.computed
        served = {x: s.f(x) for x in keys}
        old = [x for x, v in served.items() if v != (x, NEW)]
        assert not old, f"{len(old)} of 60 entries came back {time.monotonic() - healed:.2f} s after the heal"
        if s.data.computed == before:
            break
        time.sleep(0.05)
    assert s.data.computed == before, f"the 60 keys were not served by the cache within {HEAL} s of the heal"
    recovery = time.monotonic() - healed
    other, _ = Setup._decorate(make_manager(mc_config(server.address), key_prefix=s.key_prefix), s.data)
    old = [x for x in keys if other(x) != (x, NEW)]
    assert not old, f"another process got {len(old)} old values after the heal"
    print(f"\n12,000 failed invalidations in {took:.2f} s; hits resumed {recovery:.2f} s after the heal")


def test_proxy_modes(server: FaultyMemcached, proxy: Callable[[str], Proxy]) -> None:
    """The harness itself: "pass" forwards, "drop" keeps connections open and answers nothing,
    "reset" resets connections and refuses new ones, and "pass" again serves on the same port."""
    link = proxy(server.address)
    host, port = link.address.rsplit(":", 1)

    def version(sock: socket.socket) -> bytes:
        sock.sendall(b"version\r\n")
        return sock.recv(64)

    def connect() -> socket.socket:
        return socket.create_connection((host, int(port)), timeout=TIMEOUT)

    with connect() as sock:
        assert version(sock).startswith(b"VERSION")
        link.mode = "drop"
        with pytest.raises(TimeoutError):
            version(sock)
        # new connections are still accepted, and answer nothing
        with connect() as other, pytest.raises(TimeoutError):
            version(other)
        assert link.connections >= 1
        link.mode = "reset"
        with pytest.raises(OSError):
            version(sock)
            version(sock)
    with pytest.raises(ConnectionRefusedError):
        connect()
    link.mode = "pass"
    with connect() as sock:
        assert version(sock).startswith(b"VERSION")
    assert link.dropped > 0 and link.forwarded > 0
