"""Every public operation follows the failure policy with the server killed and with it hung.

No exception reaches the caller, each operation takes at most about one ``timeout`` (the first
one to meet the fault pays it; the server is then skipped), and each answers what the policy says:
the function's own value for calls and ``refresh``, the default for ``get``, ``False`` for every
invalidation that did not reach the server (``invalidate``, ``invalidate_all``, ``delete``,
``clear``) and for ``ping``; ``cache_key`` gives a key or ``None``, never an exception.
With ``raise_errors`` the failures raise. Once the server answers again, invalidations say ``True``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import pytest

from tests.faults.conftest import FaultyMemcached
from tests.faults.workers import value_of

TIMEOUT = 0.5
RETRY_INTERVAL = 0.3
#: Longest an operation may take: about one timeout, with room for a loaded machine.
ONE_TIMEOUT = 1.5 * TIMEOUT + 0.1
#: Longest the whole list of operations may take: the first one and ``ping`` may each wait once.
ALL_OPERATIONS = 4 * TIMEOUT + 0.5


def mc_config(address: str, **options: Any) -> dict[str, Any]:
    opts = {"timeout": TIMEOUT, "connect_timeout": TIMEOUT, "retry_interval": RETRY_INTERVAL, **options}
    return {"mc": {"BACKEND": "memcached", "LOCATION": address, "TIMEOUT": 300, "OPTIONS": opts}}


class Functions:
    """A sync and an async cached function of one region, counting their computations."""

    def __init__(self, manager: Any) -> None:
        self.computed = 0

        @manager.region("mc")
        def f(x: int) -> tuple[str, int, str]:
            self.computed += 1
            return value_of(x)

        @manager.region("mc")
        async def af(x: int) -> tuple[str, int, str]:
            self.computed += 1
            return value_of(x)

        self.f = f
        self.af = af


def is_key_or_none(key: Any) -> bool:
    return key is None or (isinstance(key, str) and key != "")


def operations(fn: Functions, region: Any) -> list[tuple[str, Callable[[], Any], Callable[[Any], bool]]]:
    """``(name, operation, expected(result))`` for every public operation, sync and async."""
    f, af = fn.f, fn.af

    def run(coro: Any) -> Any:
        return asyncio.run(coro)

    return [
        ("f(x)", lambda: f(1), lambda r: r == value_of(1)),
        ("f.cache_key(x)", lambda: f.cache_key(1), is_key_or_none),
        ("f.invalidate(x)", lambda: f.invalidate(1), lambda r: r is False),
        ("f.refresh(x)", lambda: f.refresh(1), lambda r: r == value_of(1)),
        ("f.invalidate_all()", lambda: f.invalidate_all(), lambda r: r is False),
        ("f(y)", lambda: f(2), lambda r: r == value_of(2)),
        ("region.get", lambda: region.get("k", "default"), lambda r: r == "default"),
        ("region.set", lambda: region.set("k", 2), lambda r: r in (None, False)),
        ("region.delete", lambda: region.delete("k"), lambda r: r is False),
        ("region.get_or_create", lambda: region.get_or_create("k2", lambda: 42), lambda r: r == 42),
        ("region.clear()", lambda: region.clear(), lambda r: r is False),
        ("region.stats()", lambda: region.stats(), lambda r: "errors" in r and "unavailable" in r),
        ("region.count()", lambda: region.count(), lambda r: r is None or isinstance(r, int)),
        ("region.ping()", lambda: region.ping(), lambda r: r is False),
        ("await af(x)", lambda: run(af(1)), lambda r: r == value_of(1)),
        ("af.cache_key(x)", lambda: af.cache_key(1), is_key_or_none),
        ("await af.invalidate(x)", lambda: run(af.invalidate(1)), lambda r: r is False),
        ("await af.refresh(x)", lambda: run(af.refresh(1)), lambda r: r == value_of(1)),
        ("await af.invalidate_all()", lambda: run(af.invalidate_all()), lambda r: r is False),
        ("await af(y)", lambda: run(af(2)), lambda r: r == value_of(2)),
    ]


def warm(fn: Functions, region: Any) -> None:
    """Entries exist before the fault, and the cache serves them."""
    fn.f(1)
    asyncio.run(fn.af(1))
    region.set("k", 1)
    computed = fn.computed
    assert fn.f(1) == value_of(1) and asyncio.run(fn.af(1)) == value_of(1)
    assert fn.computed == computed and region.get("k") == 1, "the cache does not serve before the fault"


def run_all(fn: Functions, region: Any, fault: str) -> None:
    """Run every operation once; check result, exception and time of each, then the total."""
    problems = []
    timings = []
    total = time.monotonic()
    for name, op, expected in operations(fn, region):
        start = time.monotonic()
        try:
            result: Any = op()
            error = None
        except Exception as exc:
            result, error = None, exc
        seconds = time.monotonic() - start
        timings.append(f"{name} {seconds * 1000:.0f} ms")
        if error is not None:
            problems.append(f"{name} raised {type(error).__name__}: {error}")
        elif not expected(result):
            problems.append(f"{name} returned {result!r}")
        if seconds > ONE_TIMEOUT:
            problems.append(f"{name} took {seconds:.2f} s (timeout {TIMEOUT} s)")
    total = time.monotonic() - total
    print(f"\n{fault}: all operations in {total:.2f} s; " + ", ".join(timings))
    assert not problems, f"server {fault}:\n" + "\n".join(problems)
    assert total < ALL_OPERATIONS, f"server {fault}: the operations took {total:.2f} s in all"


def wait_until_served(region: Any) -> float:
    """Seconds until a value set on the region is read back (at most 5 s, the issue's bound)."""
    start = time.monotonic()
    while time.monotonic() - start < 5:
        region.set("probe", 1)
        if region.get("probe") == 1:
            return time.monotonic() - start
        time.sleep(0.05)
    pytest.fail("the region did not cache again within 5 s of the server answering")


def invalidations_succeed(fn: Functions, region: Any) -> None:
    results = {
        "f.invalidate(x)": fn.f.invalidate(1),
        "f.invalidate_all()": fn.f.invalidate_all(),
        "region.delete": region.delete("k"),
        "region.clear()": region.clear(),
        "await af.invalidate(x)": asyncio.run(fn.af.invalidate(1)),
        "await af.invalidate_all()": asyncio.run(fn.af.invalidate_all()),
    }
    wrong = {name: r for name, r in results.items() if r is not True}
    assert not wrong, f"invalidations that reached the server must say True: {wrong}"
    assert region.ping() is True


@pytest.mark.parametrize("fault", ["killed", "hung"])
def test_every_operation_follows_the_failure_policy(
    fault: str, faulty_memcached: Callable[..., FaultyMemcached], make_manager: Callable[..., Any]
) -> None:
    server = faulty_memcached()
    manager = make_manager(mc_config(server.address))
    region = manager["mc"]
    fn = Functions(manager)
    warm(fn, region)

    if fault == "killed":
        server.kill()
    else:
        server.pause()
    run_all(fn, region, fault)
    if fault == "killed":
        server.start()
    else:
        server.resume()
    print(f"cached again {wait_until_served(region):.2f} s after the server answered")
    invalidations_succeed(fn, region)


def test_operations_with_the_server_down_from_the_start(
    faulty_memcached: Callable[..., FaultyMemcached], make_manager: Callable[..., Any]
) -> None:
    """Nothing listens yet (no generation counter could ever be read): same policy."""
    server = faulty_memcached(started=False)
    manager = make_manager(mc_config(server.address))
    region = manager["mc"]
    fn = Functions(manager)
    run_all(fn, region, "not started")
    server.start()
    wait_until_served(region)
    invalidations_succeed(fn, region)


@pytest.mark.parametrize("fault", ["refused", "hung"])
def test_raise_errors_lets_failures_through(
    fault: str, faulty_memcached: Callable[..., FaultyMemcached], make_manager: Callable[..., Any]
) -> None:
    """``OPTIONS raise_errors=True``: a call and an invalidation that fail raise, within a timeout."""
    server = faulty_memcached(started=fault == "hung")
    if fault == "hung":
        server.pause()
    manager = make_manager(mc_config(server.address, raise_errors=True))
    fn = Functions(manager)
    for name, op in [("f(x)", lambda: fn.f(1)), ("f.invalidate(x)", lambda: fn.f.invalidate(1))]:
        start = time.monotonic()
        with pytest.raises(Exception):  # noqa: B017 - any backend error, as long as it reaches us
            op()
        seconds = time.monotonic() - start
        assert seconds < ONE_TIMEOUT, f"{name} took {seconds:.2f} s before raising"
