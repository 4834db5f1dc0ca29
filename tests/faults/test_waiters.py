"""A miss does not wait for a computation whose leader is stuck on a server since marked down.

A leader that has computed a value stores it; when the link to the server drops, that store waits
out its socket timeout. Meanwhile another caller's timeout marks the server down. A caller that
misses the same key then would wait for the leader's flight, a second network wait in one outage
(``test_redis_dropped_link_under_four_threads`` counted 5 slow calls from 4 callers at -n 6). Now
it computes at once: nothing is cached while the server is down, so waiting would save only one
computation in this process, and cost up to a timeout.

The order is made for real, through a proxy dropping every byte: the call that trips the breaker
(C) is on the wire before the leader's store (A), so C's timeout comes first; the caller under
test (B) starts once the server is marked down, while A's store still hangs. Waiting for A's
flight, B would return A's value: it computes its own instead.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

from tests.faults.conftest import FaultyMemcached, FaultyRedis
from tests.faults.proxy import Proxy
from tests.faults.workers import value_of

#: socket timeouts of the region under test (seconds)
TIMEOUT = 1.0
#: how long after the tripping call (C) hangs the leader's store (A) begins: B's window to join A
GAP = 0.4


def settings(backend: str, address: str) -> dict[str, Any]:
    timeouts = {"connect_timeout": TIMEOUT, "retry_interval": 0.3, "lock_timeout": 30}
    if backend == "redis":
        return {"BACKEND": "redis", "LOCATION": f"redis://{address}/0", "TIMEOUT": 300,
                "OPTIONS": {"socket_timeout": TIMEOUT, **timeouts}}
    return {"BACKEND": "memcached", "LOCATION": address, "TIMEOUT": 300,
            "OPTIONS": {"timeout": TIMEOUT, **timeouts}}


class Scene:
    """One try of the scenario on keys ``base`` (A and B) and ``base + 1`` (C)."""

    def __init__(self, link: Proxy, store: Any, base: int) -> None:
        self.link, self.store, self.base = link, store, base
        self.computed = {base: 0, base + 1: 0}
        self.lock = threading.Lock()
        self.a_done = threading.Event()
        self.results: dict[str, Any] = {}
        self.tripper: threading.Thread | None = None

    def count(self, x: int) -> None:
        with self.lock:
            self.computed[x] += 1

    def hang_the_link(self, call_tripper: Callable[[], Any]) -> None:
        """In A's computation: drop every byte, and let C's call hang first."""
        link = self.link
        dropped = link.dropped
        link.mode = "drop"
        self.tripper = threading.Thread(target=call_tripper, daemon=True)
        self.tripper.start()
        deadline = time.monotonic() + 10
        while link.dropped == dropped and time.monotonic() < deadline:  # C's request was swallowed
            time.sleep(0.005)
        time.sleep(GAP)

    def down(self) -> bool:
        return any(h["down"] for h in self.store.health())


def wait_down(scene: Scene) -> None:
    deadline = time.monotonic() + 10 * TIMEOUT
    while not scene.down():
        assert time.monotonic() < deadline, "the server was never marked down"
        time.sleep(0.005)


def threads_scene(link: Proxy, manager: Any, base: int) -> Scene:
    scene = Scene(link, manager["mc"].store, base)

    def compute(x: int) -> tuple[str, int, str]:
        scene.count(x)
        if x == base and scene.computed[x] == 1:
            scene.hang_the_link(lambda: func(base + 1))
        return value_of(x)

    func = manager.region("mc")(compute)

    def a() -> None:
        scene.results["A"] = func(base)
        scene.a_done.set()

    leader = threading.Thread(target=a, daemon=True)
    leader.start()
    wait_down(scene)
    scene.results["A running when B began"] = not scene.a_done.is_set()
    scene.results["B"] = func(base)
    scene.results["A running when B returned"] = not scene.a_done.is_set()
    leader.join(10 * TIMEOUT)
    assert scene.tripper is not None
    scene.tripper.join(10 * TIMEOUT)
    return scene


def coroutines_scene(link: Proxy, manager: Any, base: int) -> Scene:
    scene = Scene(link, manager["mc"].store, base)

    def tripper(x: int) -> tuple[str, int, str]:
        scene.count(x)
        return value_of(x)

    trip = manager.region("mc")(tripper)  # a thread's call, on the region's server and breaker

    async def compute(x: int) -> tuple[str, int, str]:
        scene.count(x)
        if x == base and scene.computed[x] == 1:
            await asyncio.to_thread(scene.hang_the_link, lambda: trip(base + 1))
        return value_of(x)

    func = manager.region("mc")(compute)

    async def main() -> None:
        async def a() -> None:
            scene.results["A"] = await func(base)
            scene.a_done.set()

        leader = asyncio.create_task(a())
        await asyncio.to_thread(wait_down, scene)
        scene.results["A running when B began"] = not scene.a_done.is_set()
        scene.results["B"] = await func(base)
        scene.results["A running when B returned"] = not scene.a_done.is_set()
        await asyncio.wait_for(leader, 10 * TIMEOUT)

    asyncio.run(main())
    assert scene.tripper is not None
    scene.tripper.join(10 * TIMEOUT)
    return scene


@pytest.mark.parametrize("runner", ["threads", "coroutines"])
@pytest.mark.parametrize("backend", ["memcached", "redis"])
def test_a_miss_does_not_wait_for_a_leader_stuck_on_a_server_marked_down(
    faulty_memcached: Callable[..., FaultyMemcached],
    faulty_redis: Callable[..., FaultyRedis],
    proxy: Callable[[str], Proxy],
    make_manager: Callable[..., Any],
    backend: str,
    runner: str,
) -> None:
    server = faulty_redis() if backend == "redis" else faulty_memcached()
    link = proxy(server.address)
    manager = make_manager({"mc": settings(backend, link.address)})
    play = threads_scene if runner == "threads" else coroutines_scene
    tries = []
    for base in (10, 20, 30):  # a machine stalled past GAP lets A end before B begins: try again
        link.mode = "pass"
        deadline = time.monotonic() + 10 * TIMEOUT
        while manager["mc"].store.health()[0]["down"]:  # the last try's outage is over
            assert time.monotonic() < deadline, "the server was never marked up again"
            time.sleep(0.02)
        scene = play(link, manager, base)
        tries.append(scene.results)
        if scene.results["A running when B began"]:
            break
    else:
        pytest.fail(f"the leader's store never hung long enough for B to begin during it: {tries}")
    assert scene.results["A"] == scene.results["B"] == value_of(base)
    assert scene.computed[base] == 2, (
        f"B computed nothing: it waited for the leader's flight, stuck on a server marked down ({tries})"
    )
    assert scene.results["A running when B returned"], f"B returned only after the leader's store: {tries}"
    assert link.dropped > 0
