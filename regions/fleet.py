"""Stats for the whole deployment: every process publishes its regions' counters on the storage
the processes share, and any process adds up those of the processes alive.

*Publishing*, off the hit path: one daemon thread per manager, started at the first lookup of one
of its regions (again in a forked child), wakes every ``publish_every`` seconds (+-10 %). For each
shared store (``region.store.shared``) on which this process counted anything, it writes an entry
``p:<process id>`` with the counters of the regions on that store, living :data:`EXPIRE_AFTER`
intervals, and keeps a membership entry (process id -> last seen) current by read-modify-write: a
process lost to a concurrent writer adds itself again at its next publish. A process that never
used a shared region (``manage.py regions stats``) publishes nothing and is not counted. At exit,
a process publishes once more (waiting :data:`EXIT_WAIT` at most): a shell session shorter than
an interval counts until its entry expires like any other. Entries go
through ``set_entry`` (signed), in the namespace ``<identity>:~fleet`` of the store, which no
function can have (module names never start with ``~``).

*Reading* (:meth:`Fleet.deployment_stats`): the members whose entry is fresh, plus this process's
counters as they are now (the entries themselves: :mod:`regions.fleet_board`). A process id is
``host:pid:random token``; a forked child takes a new one and leaves out the counters it inherited
(a gunicorn ``--preload`` worker never reports its master's calls). Freshness is judged by the
writer's clock: keep hosts in step (NTP). A failing store never raises here: it is logged
(throttled) and the figures are this process's, saying so.
"""

from __future__ import annotations

import atexit
import math
import os
import secrets
import socket
import threading
import time
import weakref
from collections.abc import Iterable, Mapping
from typing import Any

from . import fleet_board
from .backends.contract import Backend, Store
from .errors import BackendUnavailable, ConfigurationError, describe
from .fleet_board import NAMESPACE
from .forks import reset_each
from .region import Region
from .stats import Stats
from .throttle import LOG_EVERY, Throttle

#: Default seconds between two publishes of one process (``CacheManager(publish_every=...)``).
PUBLISH_EVERY = 5.0
#: The dashboard's first look waits this long, at most, for the thread to read the figures.
FIRST_GATHER_WAIT = 0.5
#: The thread reads the figures for the dashboard at most once per this many seconds.
GATHER_EVERY = 1.0
#: At exit, the interpreter waits this long, at most, for the last publish of every manager.
EXIT_WAIT = 2.0
COUNTERS: tuple[str, ...] = Stats.__slots__

Figures = dict[str, float]
#: What was read from one shared store: ``(figures by process id, then by region, or None, error)``.
Seen = tuple[dict[str, dict[str, Any]] | None, str | None]


def check_every(every: float | None) -> float:
    """``publish_every`` (``None``: :data:`PUBLISH_EVERY`), or a ConfigurationError saying the remedy."""
    if every is None:
        every = PUBLISH_EVERY
    if isinstance(every, bool) or not isinstance(every, int | float) or not every >= 0 or every == math.inf:
        raise ConfigurationError(
            f"publish_every must be a number of seconds >= 0 (0: publish nothing), not {every!r}; "
            f"the default is {PUBLISH_EVERY:g}",
            option="publish_every",
        )
    return float(every)


def process_id() -> str:
    """``host:pid:token``: the token tells apart two processes that reuse a pid (or a forked child)."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"


def counters(stats: Stats) -> Figures:
    return {name: getattr(stats, name) for name in COUNTERS}


def summary(totals: Mapping[str, float]) -> dict[str, Any]:
    """``Region.stats()``'s figures (hit rate, mean latency...) computed from summed counters."""
    stats = Stats()
    for name in COUNTERS:
        setattr(stats, name, totals.get(name, 0))
    return stats.as_dict()


def _add(totals: Figures, figures: Mapping[str, Any]) -> None:
    for name in COUNTERS:
        value = figures.get(name)
        if isinstance(value, int | float) and not isinstance(value, bool):
            totals[name] += value


class Fleet:
    """The publisher and reader of one manager's figures (see the module docstring)."""

    def __init__(self, regions: Iterable[Region], every: float) -> None:
        self.regions = list(regions)
        self.every = float(every)
        #: Shared stores by id, with the regions they carry; region name -> its store's id.
        self.groups: dict[int, tuple[Store, list[Region]]] = {}
        self.group_of: dict[str, int] = {}
        for region in self.regions:
            shared = region.store.shared
            if shared is not None:
                self.groups.setdefault(id(shared), (shared, []))[1].append(region)
                self.group_of[region.name] = id(shared)
        self.id = process_id()
        #: Counters inherited from the parent at a fork, left out of this process's figures.
        self.base: dict[str, Figures] = {}
        #: No thread yet: the manager calls :meth:`start` on a lookup while this is true.
        self.idle = True
        self.closed = False
        #: Seconds the last publish took (all shared stores), for the curious.
        self.publish_seconds: float | None = None
        self._namespaces: dict[int, Backend] = {}
        self._throttle = Throttle("cache regions, deployment stats: ", LOG_EVERY)
        self._fresh_state()
        _FLEETS.add(self)

    def _fresh_state(self) -> None:
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._gathered = threading.Event()
        self._want = False
        self._gathered_at = -math.inf
        self._seen: dict[int, Seen] = {}
        self._due = math.inf
        self._exiting = False
        self._published_last = threading.Event()

    # the thread ---------------------------------------------------------------------------------
    def start(self) -> None:
        """Start the thread (once; never when closed or without a shared region)."""
        with self._lock:
            if not self.idle:
                return
            self.idle = False
            if self.closed or not self.groups:
                return
            self._due = time.monotonic() + self._interval() if self.every > 0 else math.inf
            thread = threading.Thread(
                target=_run, args=(weakref.ref(self), self._stop, self._wake),
                name="regions-fleet", daemon=True,
            )
        thread.start()

    def _interval(self) -> float:
        return self.every * _JITTER.uniform(0.9, 1.1)

    def step(self) -> float | None:
        """Publish if due, read the figures if asked: seconds until there is something to do."""
        if self._exiting:  # the process is ending: its figures, once more, then nothing
            self._due = math.inf
            self.publish()
            self._published_last.set()
            return None
        now = time.monotonic()
        if now >= self._due:
            self.publish()
            self._due = time.monotonic() + self._interval()
        if self._want:
            if now - self._gathered_at >= GATHER_EVERY:
                self._want = False
                self._gathered_at = now
                self._seen = {key: self._read(store) for key, (store, _) in self.groups.items()}
                self._gathered.set()
            else:
                return min(self._due, self._gathered_at + GATHER_EVERY) - now
        return None if self._due == math.inf else max(0.0, self._due - time.monotonic())

    def close(self) -> None:
        """Stop the thread. The figures already published count until they expire."""
        self.closed = True
        self._stop.set()
        self._wake.set()

    def publish_at_exit(self, wait: float) -> None:
        """Have the thread publish this process's figures now, and wait for it at most ``wait``
        seconds (a server that does not answer costs no more): a process shorter than one interval
        (a shell session, a management command) is counted too. Nothing without a thread (no shared
        region was used) or with ``publish_every=0``."""
        if self.idle or self.closed or not self.groups or self.every == 0:
            return
        self._exiting = True
        self._wake.set()
        self._published_last.wait(max(0.0, wait))

    def after_fork(self) -> None:
        """In a forked child: a new process id, the inherited counters left out, a thread of its own."""
        running = not self.idle and not self.closed
        self.id = process_id()
        self.base = {r.name: counters(r.counts) for r in self.regions}
        self._fresh_state()
        self.idle = True
        if running:
            self.start()

    # publishing ---------------------------------------------------------------------------------
    def own(self, region: Region) -> Figures:
        """This process's counters of ``region`` now (since the fork, in a forked child)."""
        now = counters(region.counts)
        base = self.base.get(region.name)
        if base is None:
            return now
        if any(now[name] < base[name] for name in COUNTERS):  # reset_stats() since the fork
            self.base.pop(region.name, None)
            return now
        return {name: now[name] - base[name] for name in COUNTERS}

    def publish(self) -> None:
        """Write this process's figures to every shared store it has used (never raises)."""
        started = time.perf_counter()
        for store, regions in self.groups.values():
            figures = {region.name: self.own(region) for region in regions}
            if not any(any(f.values()) for f in figures.values()):
                continue  # never used here: not a reporter
            if self.closed:
                return
            try:
                self._publish_to(store, figures)
            except Exception as exc:
                self._failed("publishing to", store, exc)
        self.publish_seconds = time.perf_counter() - started

    def _namespace(self, store: Store) -> Backend:
        ns = self._namespaces.get(id(store))
        if ns is None:
            ns = self._namespaces[id(store)] = store.namespace(f"{store.identity}:{NAMESPACE}")
        return ns

    def _publish_to(self, store: Store, figures: dict[str, Figures]) -> None:
        fleet_board.post(self._namespace(store), self.id, figures, self.every)

    # reading ------------------------------------------------------------------------------------
    def gather(self, store: Store) -> dict[str, dict[str, Any]]:
        """Figures (by region name) of every other process whose entry on ``store`` is fresh (this
        process's own are taken as they are now); raises when the store fails."""
        return fleet_board.read(self._namespace(store), self.id)

    def _read(self, store: Store) -> Seen:
        try:
            return self.gather(store), None
        except Exception as exc:
            self._failed("reading from", store, exc)
            return None, describe(exc)[:200]

    def _failed(self, doing: str, store: Store, exc: BaseException) -> None:
        if isinstance(exc, BackendUnavailable) or getattr(exc, "regions_logged", False):
            return  # the breaker said the server is down
        self._throttle.warning(
            "%s region %r (%s) failed: %s; its figures are this process's only meanwhile",
            doing, store.region, store.name, describe(exc)[:200],
        )

    def snapshot(self) -> dict[int, Seen]:
        """What the thread read last (never a network call here): asks it to read again, and waits
        at most :data:`FIRST_GATHER_WAIT` the first time."""
        self.start()
        self._want = True
        self._wake.set()
        if self.groups and not self.closed and not self._gathered.is_set():
            self._gathered.wait(FIRST_GATHER_WAIT)
        return dict(self._seen)

    def deployment_stats(self, *, wait: bool = True) -> dict[str, dict[str, Any]]:
        """Per region: ``Region.stats()``'s figures summed over every live process, plus
        ``processes`` (how many reported), ``scope`` (``"deployment"``, or ``"process"`` for a
        region without shared storage, or when its storage failed) and ``error`` (why the figures
        are this process's only, else ``None``).

        ``wait``: read the shared stores now (each read may wait up to the store's timeout);
        otherwise use what the thread read last (:meth:`snapshot`: for the dashboard).
        """
        if wait:
            seen = {key: self._read(store) for key, (store, _) in self.groups.items()}
        else:
            seen = self.snapshot()
        result: dict[str, dict[str, Any]] = {}
        for region in self.regions:
            own = self.own(region)
            key = self.group_of.get(region.name)
            reporters, error = (None, None) if key is None else seen.get(key, (None, "not read yet"))
            if reporters is None:  # no shared storage, or it failed: this process's figures
                result[region.name] = {**summary(own), "processes": 1, "scope": "process", "error": error}
                continue
            totals: Figures = dict.fromkeys(COUNTERS, 0)
            processes = 0
            for figures in reporters.values():
                mine = figures.get(region.name)
                if isinstance(mine, dict):
                    _add(totals, mine)
                    processes += 1
            if any(own.values()):
                _add(totals, own)
                processes += 1
            result[region.name] = {**summary(totals), "processes": processes, "scope": "deployment",
                                   "error": None}
        return result


def _run(ref: weakref.ref[Fleet], stop: threading.Event, wake: threading.Event) -> None:
    """The thread: holds its fleet only while working, so a manager dropped unclosed ends it too."""
    while not stop.is_set():
        fleet = ref()
        if fleet is None:
            return
        timeout = fleet.step()
        del fleet
        wake.wait(timeout)
        wake.clear()


_FLEETS: weakref.WeakSet[Fleet] = weakref.WeakSet()
#: The publishers' jitter: the OS's randomness, never the application's ``random`` (whose seeded
#: sequence a background thread would otherwise advance at any moment).
_JITTER = secrets.SystemRandom()


def _describe(fleet: Fleet) -> str:
    return "deployment stats of cache regions " + ", ".join(repr(r.name) for r in fleet.regions)


def _after_fork_in_child() -> None:
    reset_each(_FLEETS, _describe)  # (one fleet's failure leaves the others reset)


def _publish_at_exit() -> None:
    """At interpreter exit: every manager's last figures, within :data:`EXIT_WAIT` for them all;
    never raises (a failing store is logged, throttled, by :meth:`Fleet.publish`)."""
    deadline = time.monotonic() + EXIT_WAIT
    for fleet in list(_FLEETS):
        try:
            fleet.publish_at_exit(deadline - time.monotonic())
        except Exception:  # the exit goes on, whatever the cache does
            continue


os.register_at_fork(after_in_child=_after_fork_in_child)
atexit.register(_publish_at_exit)
