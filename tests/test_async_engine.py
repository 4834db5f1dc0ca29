"""``async def`` functions: cancellation, failures, and cache I/O kept off the event loop.

What each test guards (issue numbers):

* #9 ``test_cancelling_the_computing_task_leaves_the_other_waiters_their_value``: five tasks await
  the same missing key; cancelling the task that started the computation must not cancel the other
  four (they get the value) and the function still runs once.
* #9 ``test_wait_for_timeout_in_one_task_leaves_another_task_its_value``: ``asyncio.wait_for(f(1),
  0.05)`` timing out in one task must not cancel another task awaiting ``f(1)``.
* ``test_failing_async_computation_wakes_waiters_and_is_not_cached``: when the computation raises,
  every waiting task finishes (no hang) and the next call computes again.
* #10 ``test_cache_io_does_not_block_the_event_loop``: against a memcached that accepts connections
  but never answers (``timeout=1``), a cached ``await answer(1)`` must not stall the loop: a ticker
  task on the same loop never pauses for 0.3 s (the bug: 2 s), and the call returns the result.

The functions await an :class:`asyncio.Event`, not a sleep, so the tests decide when they finish.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time

import pytest

BACKENDS = ("memory", "memcached")


async def wait_until(predicate, timeout: float = 5.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        if loop.time() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.005)


def run(coro, timeout: float = 30.0):
    """Run ``coro`` in a fresh event loop, bounded in time."""
    return asyncio.run(asyncio.wait_for(coro, timeout))


# --- #9: cancellation ---------------------------------------------------------------------------


@pytest.mark.parametrize("backend", BACKENDS)
def test_cancelling_the_computing_task_leaves_the_other_waiters_their_value(
    backend, region_config, make_manager
):
    manager = make_manager({"r": region_config(backend, TIMEOUT=600)})
    calls: list = []

    async def main():
        finish = asyncio.Event()

        @manager.region("r")
        async def answer(x):
            calls.append(x)
            await finish.wait()
            return ("v", x)

        first = asyncio.create_task(answer(1))
        await wait_until(lambda: calls)  # the first task started the computation
        others = [asyncio.create_task(answer(1)) for _ in range(4)]
        await asyncio.sleep(0.1)  # the others are waiting for it now
        first.cancel()
        await asyncio.sleep(0.05)
        finish.set()
        results = await asyncio.wait_for(asyncio.gather(*others, return_exceptions=True), 10)
        again = await asyncio.wait_for(answer(1), 10)
        return first, results, again

    first, results, again = run(main())
    assert first.cancelled()
    assert results == [("v", 1)] * 4, f"cancelling the first caller reached the others: {results!r}"
    assert calls == [1], f"the function ran {len(calls)} times"
    assert again == ("v", 1) and calls == [1], "the value was not stored after the first caller left"


@pytest.mark.parametrize("backend", BACKENDS)
def test_wait_for_timeout_in_one_task_leaves_another_task_its_value(backend, region_config, make_manager):
    manager = make_manager({"r": region_config(backend, TIMEOUT=600)})
    calls: list = []

    async def main():
        finish = asyncio.Event()

        @manager.region("r")
        async def answer(x):
            calls.append(x)
            await finish.wait()
            return ("v", x)

        impatient = asyncio.create_task(asyncio.wait_for(answer(1), 0.05))
        await asyncio.sleep(0)  # the impatient task calls first
        patient = asyncio.create_task(answer(1))
        timed_out = await asyncio.gather(impatient, return_exceptions=True)
        await asyncio.sleep(0.05)
        finish.set()
        value = await asyncio.wait_for(asyncio.gather(patient, return_exceptions=True), 10)
        return timed_out[0], value[0]

    timed_out, value = run(main())
    assert isinstance(timed_out, TimeoutError), repr(timed_out)
    assert value == ("v", 1), f"the other task's wait_for timeout reached this one: {value!r}"
    assert calls == [1], f"the function ran {len(calls)} times"


# --- failures ------------------------------------------------------------------------------------


@pytest.mark.parametrize("backend", BACKENDS)
def test_failing_async_computation_wakes_waiters_and_is_not_cached(backend, region_config, make_manager):
    manager = make_manager({"r": region_config(backend, TIMEOUT=600)})  # lock_timeout: default 30 s
    calls: list = []
    failing = [True]

    async def main():
        release = asyncio.Event()

        @manager.region("r")
        async def answer(x):
            calls.append(x)
            if len(calls) == 1:
                await release.wait()
            if failing[0]:
                raise RuntimeError("computation failed")
            return ("v", x)

        tasks = [asyncio.create_task(answer(1))]
        await wait_until(lambda: calls)
        tasks += [asyncio.create_task(answer(1)) for _ in range(4)]
        await asyncio.sleep(0.1)
        release.set()
        outcomes = await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), 5)
        failing[0] = False
        before = len(calls)
        value = await asyncio.wait_for(answer(1), 5)
        computed_again = len(calls) - before
        hit = await asyncio.wait_for(answer(1), 5)
        return outcomes, value, computed_again, hit

    outcomes, value, computed_again, hit = run(main())
    assert all(isinstance(o, RuntimeError) for o in outcomes), outcomes
    assert value == ("v", 1)
    assert computed_again == 1, "the failure was cached: the next call did not compute"
    assert hit == ("v", 1)


# --- #10: cache I/O off the event loop -----------------------------------------------------------


@pytest.fixture
def unresponsive_address():
    """ "127.0.0.1:PORT" of a server that accepts connections and never answers."""
    server = socket.create_server(("127.0.0.1", 0))
    server.settimeout(0.1)
    port = server.getsockname()[1]
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept_forever():
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except OSError:  # the accept timeout, or the socket closed at teardown
                continue
            held.append(conn)

    thread = threading.Thread(target=accept_forever, daemon=True, name="unresponsive-memcached")
    thread.start()
    yield f"127.0.0.1:{port}"
    stop.set()
    thread.join(timeout=2)
    server.close()
    for conn in held:
        conn.close()


def test_cache_io_does_not_block_the_event_loop(unresponsive_address, region_config, make_manager):
    manager = make_manager(
        {
            "r": region_config(
                "memcached", LOCATION=unresponsive_address, OPTIONS={"timeout": 1, "connect_timeout": 1}
            )
        }
    )

    @manager.region("r")
    async def answer(x):
        return ("v", x)

    async def main():
        loop = asyncio.get_running_loop()
        longest = 0.0
        done = False

        async def ticker():
            nonlocal longest
            last = loop.time()
            while not done:
                await asyncio.sleep(0.01)
                now = loop.time()
                longest = max(longest, now - last)
                last = now

        ticking = asyncio.create_task(ticker())
        await asyncio.sleep(0.05)
        try:
            value = await asyncio.wait_for(answer(1), 15)
        finally:
            done = True
            await ticking
        return value, longest

    value, longest = run(main())
    assert value == ("v", 1)
    assert longest < 0.3, f"the event loop stood still for {longest:.2f} s during cache I/O"



def test_a_flight_left_behind_by_a_closed_loop_does_not_block_later_callers(make_manager):
    """A loop closed while its task computed a key: later callers must not wait for that task."""
    manager = make_manager({"m": {"BACKEND": "memory", "OPTIONS": {"lock_timeout": 5}}})
    hang = [True]

    @manager.region("m")
    async def value(x):
        if hang[0]:
            await asyncio.sleep(3600)
        return x

    loop = asyncio.new_event_loop()
    pending = loop.create_task(value(1))
    loop.run_until_complete(asyncio.sleep(0.05))  # the computation is under way when the loop stops
    loop.close()  # ... and the loop is closed with it still pending
    hang[0] = False

    start = time.monotonic()
    assert asyncio.run(asyncio.wait_for(value(1), 10)) == 1
    waited = time.monotonic() - start
    assert waited < 2.5, f"waited {waited:.1f} s for a computation whose event loop is gone"
    assert manager["m"].stats()["lock_timeouts"] == 0
    del pending
