"""The compute-once protocol (:mod:`regions.engine.protocol`) driven in the calling thread."""

from __future__ import annotations

import concurrent.futures
import time
from collections.abc import Callable, Hashable
from typing import TYPE_CHECKING, Any, TypeVar

from ..backends.contract import Entries, Entry
from .flights import FLIGHTS, Flight
from .protocol import ACQUIRE, COMPUTE, Call, Steps

if TYPE_CHECKING:
    from . import Engine

T = TypeVar("T")


def run(engine: Engine, call: Call, steps: Steps, creator: Callable[[], Any]) -> Any:
    """Perform each operation ``steps`` asks for; return what they return."""
    reply: Any = None
    while True:
        try:
            op = steps.send(reply)
        except StopIteration as done:
            return done.value
        kind = op[0]
        if kind == COMPUTE:
            reply = creator()
            continue
        flight = call.flight  # a leader: its waiters see it is on the network (Call.worth_waiting)
        if flight is not None:
            flight.io_since = time.monotonic()
        if kind == ACQUIRE and op[1]:  # wait until the deadline, polling in this thread
            reply = engine.try_lock(call.shared, max(0.0, op[1] - time.monotonic()))  # type: ignore[arg-type]
        else:
            io, args = engine.operation(call, op)
            reply = io(*args)
        if flight is not None:
            flight.io_since = None


def get_or_create(
    engine: Engine, ns: Entries, key: Hashable, creator: Callable[[], T], ttl: float | None
) -> T:
    """The value of ``key``: read, then :func:`fill` on a miss."""
    seq = FLIGHTS.completed
    entry, fresh = engine.region.read(ns, key)
    if fresh:
        return entry[2]  # type: ignore[index]
    return fill(engine, ns, key, entry, seq, creator, ttl)


def fill(
    engine: Engine, ns: Entries, key: Hashable, entry: Entry | None, seq: int, creator: Callable[[], T],
    ttl: float | None,
) -> T:
    """After a read at flight count ``seq`` found ``entry`` missing or expired."""
    region = engine.region
    if not region.store.active:
        return creator()
    call = Call(region, engine.storage, ns, key, entry, seq, ttl)
    while True:
        flight, leads = call.join()
        if flight is None:
            return call.stale()
        if leads:
            return _lead(engine, call, flight, creator)
        if not call.worth_waiting(flight):  # its leader waits out a timeout: compute meanwhile
            FLIGHTS.leave(flight)
            return run(engine, call, call.compute(), creator)
        try:
            value = flight.future.result(call.left())
        except concurrent.futures.TimeoutError:
            call.timed_out()
            return run(engine, call, call.compute(), creator)
        except concurrent.futures.CancelledError:
            continue  # its coroutine leader was cancelled with no caller left: start over
        finally:
            FLIGHTS.leave(flight)
        call.joined()
        return value


def _lead(engine: Engine, call: Call, flight: Flight, creator: Callable[[], T]) -> T:
    try:
        value = run(engine, call, call.lead(), creator)
    except BaseException as exc:
        flight.future.set_exception(exc)
        raise
    finally:
        if call.held:
            engine.unlock(call.shared)  # type: ignore[arg-type]
        FLIGHTS.land(call.token, flight)
    flight.future.set_result(value)
    return value
