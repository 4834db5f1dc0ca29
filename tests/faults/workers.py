"""Callers of a cached function under a fault, and what they measured.

The same loop runs in threads of the test process and in spawned children
(``multiprocessing.get_context("spawn")`` imports this module by name, so everything a child runs
is a top-level function here). Each call is recorded as a :class:`Call`; :class:`Outcome` sums up
the calls of one fault the way the issue asks: wrong results, exceptions reaching callers, slowest
call, calls that waited on the network, and the time until hits resumed.

A call is *computed* when the cached function ran in that very call (a thread-local flag the
function sets). A call on a key no other caller uses that is not computed was served by the cache:
that is how a caller sees that hits resumed.
"""

from __future__ import annotations

import math
import os
import threading
import time
import traceback
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

#: Pause between two calls of one caller: keeps the loops from spinning, still hundreds of calls/s.
PAUSE = 0.002

#: The secret of the spawned callers, and of a parent sharing their entries: signed, as in production
#: (without it each process would reject the others' entries as forged).
SECRET = "fault-workers-secret-" + "0123456789abcdef"


def value_of(x: int) -> tuple[str, int, str]:
    """What the cached function returns for ``x`` (a wrong result is anything else)."""
    return ("value", x, f"payload-{x}-" + "z" * (x % 13))


class Computations:
    """The cached function's side: counts computations, and tells the caller whether it computed."""

    def __init__(self) -> None:
        self.count = 0
        self._lock = threading.Lock()
        self._local = threading.local()

    def compute(self, x: int) -> tuple[str, int, str]:
        with self._lock:
            self.count += 1
        self._local.computed = True
        return value_of(x)

    async def acompute(self, x: int) -> tuple[str, int, str]:
        return self.compute(x)

    def start_call(self) -> None:
        self._local.computed = False

    def computed(self) -> bool:
        return bool(getattr(self._local, "computed", False))


class Call(NamedTuple):
    """One call: when it started (``time.monotonic()``, one clock for all processes of the host),
    how long it took, its key, whether only this caller uses the key, whether the function ran
    in it, whether its result was wrong, and the exception that reached the caller ("" if none)."""

    start: float
    seconds: float
    key: int
    own_key: bool
    computed: bool
    wrong: bool
    error: str


def keys_of(caller: int, own: int = 3, shared: int = 3) -> list[tuple[int, bool]]:
    """``(key, own)`` pairs a caller cycles through: ``own`` keys only it uses, ``shared`` keys all use."""
    return [(1000 * (caller + 1) + i, True) for i in range(own)] + [(i, False) for i in range(shared)]


def call_once(func: Callable[[int], Any], comps: Computations, key: int, own: bool) -> Call:
    comps.start_call()
    start = time.monotonic()
    error = ""
    wrong = False
    try:
        wrong = func(key) != value_of(key)
    except Exception:
        error = traceback.format_exc(limit=3)
    return Call(start, time.monotonic() - start, key, own, comps.computed(), wrong, error)


def call_until(
    func: Callable[[int], Any],
    comps: Computations,
    keys: Sequence[tuple[int, bool]],
    stop: Any,
    calls: list[Call],
    most_seconds: float = 30.0,
) -> None:
    """Call ``func`` on ``keys`` in turn until ``stop`` (an Event) is set, appending to ``calls``."""
    end = time.monotonic() + most_seconds  # never runs on if the test forgot to stop it
    i = 0
    while not stop.is_set() and time.monotonic() < end:
        key, own = keys[i % len(keys)]
        calls.append(call_once(func, comps, key, own))
        i += 1
        time.sleep(PAUSE)


def recovered_at(calls: Iterable[Call], since: float) -> float | None:
    """Start of the first call after ``since`` served by the cache on a key only its caller uses."""
    for call in calls:
        if call.start >= since and call.own_key and not call.computed and not call.error:
            return call.start
    return None


class Heartbeat:
    """A thread of the callers' process that wakes every few milliseconds: the gaps between its
    beats are the times the process itself was held (its CPU share given to other test workers,
    or the GIL to other threads). A call slow only by such a gap did not wait on the network.
    As a context manager: beats from entry to exit; :meth:`held` then measures a window."""

    EVERY = 0.005
    #: A gap longer than this between two beats is counted as the process held.
    GAP = 0.03

    def __init__(self) -> None:
        self.beats: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, name="heartbeat", daemon=True)

    def _beat(self) -> None:
        while not self._stop.wait(self.EVERY):
            self.beats.append(time.monotonic())

    def __enter__(self) -> Heartbeat:
        self.beats.append(time.monotonic())
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def held(self, start: float, end: float) -> float:
        """Seconds of ``[start, end]`` inside gaps between beats longer than :data:`GAP`, less
        the beat interval each gap would have had anyway."""
        total = 0.0
        beats = self.beats
        for before, after in zip(beats, beats[1:], strict=False):
            if after <= start:
                continue
            if before >= end:
                break
            if after - before > self.GAP:
                total += max(0.0, min(after, end) - max(before, start) - self.EVERY)
        return total


@dataclass
class Outcome:
    """What one fault cost, summed over every caller."""

    calls: int = 0
    wrong: int = 0
    exceptions: list[str] = field(default_factory=list)
    slowest: float = 0.0
    #: calls of the fault window that took longer than ``slow`` seconds (they waited on the network)
    waited: int = 0
    #: those calls, for a failure message: caller, start (s after the fault began), seconds, key
    #: (own or shared), computed, and the exception if any
    slow_calls: list[str] = field(default_factory=list)
    #: calls of the fault window slow only while their process was held (:class:`Heartbeat`): not
    #: counted in ``waited``, listed for the report
    held_calls: list[str] = field(default_factory=list)
    #: seconds from the end of the fault until every caller was served by the cache again (inf: never)
    recovery: float = math.inf
    #: computations in calls that started after ``settle`` seconds past the recovery
    computed_after: int = 0

    def row(self, fault: str) -> str:
        return (
            f"| {fault} | {self.wrong} | {len(self.exceptions)} | {self.slowest * 1000:.0f} ms | "
            f"{self.waited} | {self.recovery:.2f} s | {self.calls} |"
        )


def summarize(
    per_caller: Sequence[Sequence[Call]],
    *,
    fault_start: float,
    fault_end: float,
    slow: float,
    settle: float = 0.5,
    heartbeat: Heartbeat | None = None,
) -> Outcome:
    """Sum the calls of every caller (see :class:`Outcome`). With the ``heartbeat`` of the callers'
    process, a call's seconds while the process was held do not count towards ``slow``."""
    out = Outcome()
    recoveries = []
    for caller, calls in enumerate(per_caller):
        for call in calls:
            out.calls += 1
            out.wrong += call.wrong
            if call.error:
                out.exceptions.append(call.error)
            out.slowest = max(out.slowest, call.seconds)
            if fault_start <= call.start < fault_end and call.seconds > slow:
                held = 0.0 if heartbeat is None else heartbeat.held(call.start, call.start + call.seconds)
                said = (
                    f"caller {caller} at +{call.start - fault_start:.3f} s: {call.seconds:.3f} s"
                    + (f" (the process held {held:.3f} s of it)" if held else "")
                    + f", key {call.key} ({'own' if call.own_key else 'shared'}), computed={call.computed}"
                    + (f", {call.error}" if call.error else "")
                )
                if call.seconds - held > slow:
                    out.waited += 1
                    out.slow_calls.append(said)
                else:
                    out.held_calls.append(said)
        at = recovered_at(calls, fault_end)
        recoveries.append(math.inf if at is None else at - fault_end)
    out.recovery = max(recoveries) if recoveries else math.inf
    if math.isfinite(out.recovery):
        quiet_from = fault_end + out.recovery + settle
        out.computed_after = sum(c.computed for calls in per_caller for c in calls if c.start >= quiet_from)
    return out


# spawned children ------------------------------------------------------------------------------
def process_caller(
    config: dict[str, Any],
    key_prefix: str,
    caller: int,
    ready: Any,
    go: Any,
    stop: Any,
    resumed_at: Any,
    results: Any,
) -> None:
    """A spawned child: one thread calling a cached function on its own and shared keys.

    Puts ``("ready", pid)`` on ``ready``, waits for ``go``, calls until ``stop``; puts
    ``("recovered", pid)`` on ``results`` once the cache serves it again after ``resumed_at`` (a
    shared double, ``inf`` until the parent ends the fault); finally ``("done", pid, calls, stats)``
    or ``("error", pid, traceback)``.
    """
    manager = None
    try:
        import regions

        manager = regions.CacheManager(config, key_prefix=key_prefix, secret=SECRET)
        comps = Computations()
        func = manager.region("mc")(comps.compute)
        keys = keys_of(caller)
        ready.put(("ready", os.getpid()))
        if not go.wait(60):
            results.put(("error", os.getpid(), "the parent never said go"))
            return
        calls: list[Call] = []
        told = False
        end = time.monotonic() + 30
        i = 0
        while not stop.is_set() and time.monotonic() < end:
            key, own = keys[i % len(keys)]
            call = call_once(func, comps, key, own)
            calls.append(call)
            i += 1
            if not told and call.own_key and not call.computed and call.start >= resumed_at.value:
                results.put(("recovered", os.getpid()))
                told = True
            time.sleep(PAUSE)
        results.put(("done", os.getpid(), calls, manager["mc"].stats()))
    except BaseException:
        results.put(("error", os.getpid(), traceback.format_exc()))
    finally:
        if manager is not None:
            manager.close()


# forked children -------------------------------------------------------------------------------
def forked_caller(func: Callable[[int], Any], region: Any, calls: int, go: Any, results: Any) -> None:
    """A child forked from a process that used ``func``'s region: ``calls`` calls, then its stats.

    Waits for ``go`` so that every child uses what it inherited at the same moment.
    Puts ``("done", pid, wrong, exceptions, stats)`` on ``results``.
    """
    try:
        go.wait(30)
        wrong = 0
        errors: list[str] = []
        for i in range(calls):
            key = i % 5
            try:
                wrong += func(key) != value_of(key)
            except Exception:
                errors.append(traceback.format_exc(limit=3))
        results.put(("done", os.getpid(), wrong, errors, region.stats()))
    except BaseException:
        results.put(("error", os.getpid(), 0, [traceback.format_exc()], {}))
