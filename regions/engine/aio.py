"""The compute-once protocol (:mod:`regions.engine.protocol`) driven by coroutines.

Backend calls run on the store's I/O threads, never on the event loop (in-process stores: on the
loop, they do no I/O), except the first read of a call when the backend reads on the loop itself
(:class:`~regions.backends.contract.AsyncEntries`: a hit then needs no thread). Re-reads after a
miss, locks, leases and stores stay on the I/O threads.

The computation of a flight runs in a task of its own: a caller cancelled while waiting leaves the
others waiting; the computation is cancelled only when no caller is left.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Hashable
from typing import TYPE_CHECKING, Any, TypeVar

from .. import trace as _trace
from ..backends.contract import Entries, Entry, SharedLock
from .flights import FLIGHTS, Flight
from .protocol import ACQUIRE, COMPUTE, Call, Steps

if TYPE_CHECKING:
    from . import Engine

T = TypeVar("T")


async def call_io(engine: Engine, call: Callable[..., T], *args: Any) -> T:
    """Run a blocking backend call on the store's I/O threads (in-process stores: here)."""
    store = engine.region.store
    if not store.io:
        return call(*args)
    if _trace.ON:  # the I/O thread's failures belong to the traced call
        call = _trace.carry(call)
    return await asyncio.get_running_loop().run_in_executor(store.executor, call, *args)


async def run(engine: Engine, call: Call, steps: Steps, creator: Callable[[], Awaitable[Any]]) -> Any:
    """Perform each operation ``steps`` asks for; return what they return."""
    reply: Any = None
    while True:
        try:
            op = steps.send(reply)
        except StopIteration as done:
            return done.value
        kind = op[0]
        if kind == COMPUTE:
            reply = await creator()
            continue
        flight = call.flight  # a leader: its waiters see it is on the network (Call.worth_waiting)
        if flight is not None:
            flight.io_since = time.monotonic()
        if kind == ACQUIRE and op[1]:  # wait until the deadline without blocking the loop
            reply = await _poll(engine, call.shared, op[1])  # type: ignore[arg-type]
        else:
            io, args = engine.operation(call, op)
            reply = await call_io(engine, io, *args)
        if flight is not None:
            flight.io_since = None


async def aget_or_create(
    engine: Engine, ns: Entries, key: Hashable, creator: Callable[[], Awaitable[T]], ttl: float | None
) -> T:
    """:func:`regions.engine.sync.get_or_create` for coroutine functions."""
    region = engine.region
    if not region.store.active:
        return await creator()
    seq = FLIGHTS.completed
    if hasattr(ns, "aget_entry"):  # the backend reads on the loop (AsyncEntries): no thread hop
        entry, fresh = await region.aread(ns, key)  # type: ignore[arg-type]
    else:
        entry, fresh = await call_io(engine, region.read, ns, key)
    if fresh:
        return entry[2]  # type: ignore[index]
    return await fill(engine, ns, key, entry, seq, creator, ttl)


async def fill(
    engine: Engine, ns: Entries, key: Hashable, entry: Entry | None, seq: int,
    creator: Callable[[], Awaitable[T]], ttl: float | None,
) -> T:
    """:func:`regions.engine.sync.fill` for coroutine functions: after a read at flight count
    ``seq`` found ``entry`` missing or expired (the decorator's read on the loop goes straight here
    on a miss: a hit then costs no coroutine of this module's)."""
    region = engine.region
    if not region.store.active:
        return await creator()
    call = Call(region, engine.storage, ns, key, entry, seq, ttl)
    while True:
        flight, leads = call.join()
        if flight is None:
            return call.stale()
        if leads:
            flight.task = asyncio.get_running_loop().create_task(_lead(engine, call, flight, creator))
        elif not call.worth_waiting(flight):  # its leader waits out a timeout: compute meanwhile
            FLIGHTS.leave(flight)
            return await run(engine, call, call.compute(), creator)
        waiting = asyncio.shield(asyncio.wrap_future(flight.future))
        try:
            value = await asyncio.wait_for(waiting, call.left())
        except TimeoutError:
            FLIGHTS.leave(flight)
            call.timed_out()
            return await run(engine, call, call.compute(), creator)
        except asyncio.CancelledError:
            left = FLIGHTS.leave(flight)
            task = asyncio.current_task()
            if flight.future.cancelled() and not (task and task.cancelling()):
                continue  # the computation was cancelled, not this caller: start over
            if left == 0 and flight.task is not None:
                flight.task.cancel()  # nobody waits for it any more
            raise
        except BaseException:
            FLIGHTS.leave(flight)
            raise
        FLIGHTS.leave(flight)
        if not leads:
            call.joined()
        return value


async def _lead(engine: Engine, call: Call, flight: Flight, creator: Callable[[], Awaitable[Any]]) -> None:
    """The computation of a flight led by a coroutine: its outcome goes to ``flight.future``."""
    future = flight.future
    try:
        future.set_result(await run(engine, call, call.lead(), creator))
    except asyncio.CancelledError:
        future.cancel()
        raise
    except BaseException as exc:  # handed to the callers through the future
        future.set_exception(exc)
    finally:
        if call.held:
            _release_later(engine, call.shared)  # type: ignore[arg-type]
        FLIGHTS.land(call.token, flight)


async def _poll(engine: Engine, lock: SharedLock, deadline: float) -> bool | None:
    """Wait for a shared lock without blocking the loop or holding an I/O thread for long."""
    pause = 0.005
    while True:
        got = await call_io(engine, engine.try_lock, lock, 0)
        if got is not False:
            return got
        left = deadline - time.monotonic()
        if left <= 0:
            return False
        await asyncio.sleep(min(pause, left))
        pause = min(pause * 2, 0.1)


def _release_later(engine: Engine, lock: SharedLock) -> None:
    store = engine.region.store
    if store.io:
        store.executor.submit(engine.unlock, lock)
    else:
        engine.unlock(lock)
