"""Tracing decorated calls: which region, function and key, what came of it and how long it took.

A :class:`Recorder` collects the calls made in its context (a :class:`contextvars.ContextVar`: one
thread, one asyncio task and the tasks and threads that copy its context)::

    with trace.Recorder() as recorder:
        view(request)
    for call in recorder.calls:
        print(call.region, call.function, call.key, call.outcome, call.seconds)

Free while nothing records. The decorated call paths test one module flag, :data:`ON`, which is
``False`` unless some recorder is open in the process; only while it is ``True`` do they hand the
call to :func:`traced` / :func:`atraced`. Switching it bumps the epoch of every decorator source
(the default manager and all managers), so bound functions rebind, and
:meth:`regions.decorator.Binding.current` turns the inline hit path of in-process stores off while
tracing is on (and back on once it is off).

The outcome of a call is set by what the engine did for that very call, never by comparing the
region's shared counters (other threads move them too): ``"miss"`` when this call ran the function,
``"stale"`` when it was served an expired value (:meth:`regions.engine.protocol.Call.stale`), ``"error"``
when a backend call failed on its behalf (:meth:`regions.region.Region.failed`), else ``"hit"``
(a fresh entry, or the value another caller computed meanwhile).
"""

from __future__ import annotations

import functools
import threading
import time
from collections.abc import Awaitable, Callable, Hashable, Iterable
from contextvars import ContextVar, Token
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self, TypeVar

if TYPE_CHECKING:
    from .backends.contract import Entries
    from .decorator import Binding

__all__ = ["ON", "OUTCOMES", "Call", "Recorder", "current", "totals"]

T = TypeVar("T")

#: ``True`` while at least one :class:`Recorder` is open in this process (read on the call paths).
ON = False

#: Every outcome a call can have.
OUTCOMES = ("hit", "miss", "stale", "error")

_switch = threading.Lock()
_open = 0  # recorders open in the process
_recorder: ContextVar[Recorder | None] = ContextVar("regions_trace_recorder", default=None)
_call: ContextVar[Call | None] = ContextVar("regions_trace_call", default=None)


class Call:
    """One traced call. ``key`` is the argument part of the key as text (what ``cache_key`` would
    name); ``seconds`` includes the function's own run on a miss."""

    __slots__ = ("region", "function", "key", "seconds", "computed", "stale", "error")

    def __init__(self, region: str, function: str, key: str) -> None:
        self.region, self.function, self.key = region, function, key
        self.seconds = 0.0
        self.computed = self.stale = self.error = False

    @property
    def outcome(self) -> str:
        """``"error"``, ``"stale"``, ``"miss"`` or ``"hit"``, in that order of precedence."""
        if self.error:
            return "error"
        if self.stale:
            return "stale"
        return "miss" if self.computed else "hit"

    def as_dict(self) -> dict[str, Any]:
        return {
            "region": self.region,
            "function": self.function,
            "key": self.key,
            "outcome": self.outcome,
            "seconds": self.seconds,
        }

    def __repr__(self) -> str:
        return f"<Call {self.region}:{self.function}({self.key}) {self.outcome} {self.seconds * 1e3:.3f} ms>"


class Recorder:
    """Collects the decorated calls made in its context while it is open (``with``, or
    :meth:`start` / :meth:`stop` from the same context). Override :meth:`record` to see each call
    as it starts."""

    def __init__(self) -> None:
        self.calls: list[Call] = []
        self._token: Token[Recorder | None] | None = None

    def record(self, call: Call) -> None:
        """Called when a traced call starts (its outcome and time are set when it ends)."""
        self.calls.append(call)

    def finished(self, call: Call) -> None:
        """Called when a traced call has ended (returned or raised)."""

    def start(self) -> Self:
        if self._token is not None:
            raise RuntimeError("this recorder is already open")
        self._token = _recorder.set(self)
        _enable()
        return self

    def stop(self) -> None:
        """Stop recording (idempotent; from another context it still stops)."""
        token, self._token = self._token, None
        if token is None:
            return
        try:
            _recorder.reset(token)
        except ValueError:  # stopped from another context: at least stop recording here
            if _recorder.get() is self:
                _recorder.set(None)
        _disable()

    @property
    def recording(self) -> bool:
        return self._token is not None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def totals(self) -> dict[str, dict[str, Any]]:
        """:func:`totals` of the calls recorded so far."""
        return totals(self.calls)


def totals(calls: Iterable[Call]) -> dict[str, dict[str, Any]]:
    """Per region: ``calls``, one count per outcome, and ``seconds`` (sum of the calls' times)."""
    out: dict[str, dict[str, Any]] = {}
    for call in calls:
        row = out.get(call.region)
        if row is None:
            row = out[call.region] = {"calls": 0, **dict.fromkeys(OUTCOMES, 0), "seconds": 0.0}
        row["calls"] += 1
        row[call.outcome] += 1
        row["seconds"] += call.seconds
    return out


def current() -> Recorder | None:
    """The recorder of this context, if one is open."""
    return _recorder.get()


# the switch ------------------------------------------------------------------------------------
def _enable() -> None:
    global ON, _open
    with _switch:
        _open += 1
        if _open == 1:
            ON = True
            _rebind()


def _disable() -> None:
    global ON, _open
    with _switch:
        _open -= 1
        if _open == 0:
            ON = False
            _rebind()


#: Called when :data:`ON` changes: decorator sources (:mod:`regions.manager`) bump their epoch so
#: that every decorated function rebinds at its next call (and reads :data:`ON` while rebinding).
_on_switch: list[Callable[[], None]] = []


def on_switch(callback: Callable[[], None]) -> None:
    """Call ``callback()`` each time recording turns on or off in this process."""
    _on_switch.append(callback)


def _rebind() -> None:
    for callback in _on_switch:
        callback()


# the call paths ----------------------------------------------------------------------------------
def _begin(b: Binding[Any, Any], key: Hashable, creator: functools.partial[Any]) -> Call:
    text = key if isinstance(key, str) else b.builder.text(creator.args, creator.keywords)
    return Call(b.region.name, b.qualname, text)


def _computing(call: Call, creator: Callable[[], T]) -> Callable[[], T]:
    """``creator`` noting that it ran; while it runs, failures elsewhere are not this call's."""

    def compute() -> T:
        call.computed = True
        token = _call.set(None)
        try:
            return creator()
        finally:
            _call.reset(token)

    return compute


def _acomputing(call: Call, creator: Callable[[], Awaitable[T]]) -> Callable[[], Awaitable[T]]:
    async def compute() -> T:
        call.computed = True
        token = _call.set(None)
        try:
            return await creator()
        finally:
            _call.reset(token)

    return compute


def traced(b: Binding[Any, Any], ns: Entries, key: Hashable, creator: functools.partial[T]) -> T:
    """A decorated sync call while :data:`ON`: recorded when this context has a recorder."""
    recorder = _recorder.get()
    region = b.region
    if recorder is None:
        return region.engine.get_or_create(ns, key, creator, b.ttl)
    call = _begin(b, key, creator)
    recorder.record(call)
    token = _call.set(call)
    start = time.perf_counter()
    try:
        return region.engine.get_or_create(ns, key, _computing(call, creator), b.ttl)
    finally:
        call.seconds = time.perf_counter() - start
        _call.reset(token)
        recorder.finished(call)


async def atraced(
    b: Binding[Any, Any], ns: Entries, key: Hashable, creator: functools.partial[Awaitable[T]]
) -> T:
    """:func:`traced` for coroutine functions."""
    recorder = _recorder.get()
    region = b.region
    if recorder is None:
        return await region.engine.aget_or_create(ns, key, creator, b.ttl)
    call = _begin(b, key, creator)
    recorder.record(call)
    token = _call.set(call)
    start = time.perf_counter()
    try:
        return await region.engine.aget_or_create(ns, key, _acomputing(call, creator), b.ttl)
    finally:
        call.seconds = time.perf_counter() - start
        _call.reset(token)
        recorder.finished(call)


def stale() -> None:
    """The engine served an expired value to the current call."""
    call = _call.get()
    if call is not None:
        call.stale = True


def failed() -> None:
    """A backend call failed on behalf of the current call."""
    call = _call.get()
    if call is not None:
        call.error = True


def carry(io: Callable[..., T]) -> Callable[..., T]:
    """``io`` made to run on an I/O thread as part of the current call (whose failures it marks)."""
    call = _call.get()
    if call is None:
        return io

    def run(*args: Any) -> T:
        token = _call.set(call)
        try:
            return io(*args)
        finally:
            _call.reset(token)

    return run
