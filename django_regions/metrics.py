"""Prometheus metrics of the default manager's regions: mount :func:`metrics_view` (``/metrics``).

Needs ``prometheus_client`` (``pip install 'cache-regions[prometheus]'``); without it the view answers 501
saying so. Nothing imports this module unless a URLconf (or code) does, and ``django_regions`` never
imports ``prometheus_client``.

*What*: per region (labels ``region`` and ``backend``), counters ``regions_<name>_total`` for
:data:`COUNTERS` and a histogram ``regions_backend_latency_seconds`` of the backend calls the region
already times (every write, one read in :data:`regions.region.READ_SAMPLE`; in-process stores are
not timed). Counts are this process's since it started, or since the fork for a forked worker (the
parent's counts are its own).

*How*, off the hit path: regions keep plain integers (:class:`regions.stats.Stats`); a daemon
thread per process, started when this module is imported and again in each forked child
(``os.register_at_fork``), adds every :func:`flush_every` seconds each region's increase since its
last flush to the Prometheus counters, and the scraping process flushes right before it answers. A
thread rather than a middleware hook: no cost per request, and processes that call cached
functions outside requests are counted too. A ``reset_stats()`` is seen as counters going down:
what was counted since it is added (at most one interval of counts before it is lost, never
subtracted). Regions a settings change replaces get one last flush; regions built and dropped
between two flushes are not counted.

*gunicorn*: set ``PROMETHEUS_MULTIPROC_DIR`` to an empty folder before the server starts; each
worker writes its own figures there and any worker's ``/metrics`` sums them. There are no gauges,
so no ``child_exit`` hook is needed: a dead worker's counts stay in the totals, as counters should.

*What it serves*: the regions' metrics only, from a registry of their own (:attr:`Exporter.registry`;
under ``PROMETHEUS_MULTIPROC_DIR``, only their families of the workers' files), never
prometheus_client's default registry: the rest of the process's metrics (another app's, the process
and platform collectors) are not shown to whoever may read this view. To export the regions'
metrics from an endpoint of your own too,
``prometheus_client.REGISTRY.register(django_regions.metrics.start().registry)``.

*Who may read it*: counts and timings by region name and backend name, nothing else (no keys,
values, addresses). It is open by default, as scrapers do not log in: restrict it at the proxy, or
set ``REGIONS_METRICS_PRIVATE = True`` to give it the dashboard's rule (staff,
``REGIONS_DASHBOARD_PERMISSION``, ``REGIONS_DASHBOARD_PUBLIC``), refusing anyone else with 403.
``REGIONS_METRICS_EVERY``: seconds between two flushes (default :data:`FLUSH_EVERY`).
"""

from __future__ import annotations

import collections
import importlib.util
import logging
import os
import threading
import time
from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.views.decorators.cache import never_cache

from regions.region import Region
from regions.throttle import LOG_EVERY, Throttle

__all__ = ["COUNTERS", "FLUSH_EVERY", "available", "flush", "metrics_view", "start"]

logger = logging.getLogger("django_regions")

#: Default seconds between two flushes of one process's counts (``REGIONS_METRICS_EVERY``).
FLUSH_EVERY = 2.0
#: Stats counters exported as ``regions_<name>_total``, with their help text.
COUNTERS: dict[str, str] = {
    "hits": "Values served without computing them (stale ones included)",
    "misses": "Computations of a value",
    "stale": "Stale values served while another caller recomputed them",
    "errors": "Backend calls that failed",
    "unavailable": "Backend calls skipped because the server was marked down",
    "rejected": "Stored entries that were not ours or malformed, read as misses",
    "sets": "Values stored",
    "lock_timeouts": "Waits for another caller's computation that reached lock_timeout",
    "voided": "Computed values not stored: another process deleted their key during the computation",
}
#: Buckets of ``regions_backend_latency_seconds``: 10 microseconds to 1 second.
BUCKETS = (1e-5, 2.5e-5, 5e-5, 1e-4, 2.5e-4, 5e-4, 1e-3, 2.5e-3, 5e-3, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0)
#: Timings kept per region between two flushes (the oldest are dropped beyond).
SAMPLES_KEPT = 8192
NOT_INSTALLED = (
    "prometheus_client is not installed: pip install 'cache-regions[prometheus]' "
    "(or prometheus-client) to serve the cache regions' metrics\n"
)

#: What :func:`prometheus_client.generate_latest` writes, named as every Prometheus version accepts it.
TEXT_FORMAT = "text/plain; version=0.0.4; charset=utf-8"

Figures = dict[str, float]


def available() -> bool:
    """Whether ``prometheus_client`` can be imported."""
    return importlib.util.find_spec("prometheus_client") is not None


def flush_every() -> float:
    """``REGIONS_METRICS_EVERY`` when it is a number of seconds > 0, else :data:`FLUSH_EVERY`."""
    every = getattr(settings, "REGIONS_METRICS_EVERY", None)
    if isinstance(every, int | float) and not isinstance(every, bool) and every > 0:
        return float(every)
    return FLUSH_EVERY


def multiprocess_dir() -> str | None:
    """``PROMETHEUS_MULTIPROC_DIR``, when set (``prometheus_client`` then writes to files there)."""
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR") or None


class _Tracked:
    """One region followed by the exporter: its counts at the last flush and its new timings."""

    __slots__ = ("region", "own", "last", "samples", "counters", "latency")

    def __init__(self, region: Region, own: Callable[[Region], Figures], exporter: Exporter) -> None:
        self.region, self.own = region, own
        self.last: Figures = {}
        self.samples: collections.deque[float] = collections.deque(maxlen=SAMPLES_KEPT)
        labels = {"region": region.name, "backend": region.backend}
        self.counters = {name: exporter.counters[name].labels(**labels) for name in COUNTERS}
        self.latency = exporter.latency.labels(**labels)
        region.on_timing = self.samples.append

    def flush(self) -> None:
        now = self.own(self.region)
        last = self.last
        if any(value < last.get(name, 0) for name, value in now.items()):  # reset_stats(): all restart
            last = {}
        for name, counter in self.counters.items():
            added = now.get(name, 0) - last.get(name, 0)
            if added > 0:
                counter.inc(added)
        self.last = dict(now)
        samples, observe = self.samples, self.latency.observe
        while samples:
            observe(samples.popleft())


def _own_counts(manager: Any) -> Callable[[Region], Figures]:
    """This process's counts of a region: since the fork in a forked child (the manager's fleet
    keeps the counts inherited at the fork: ``CacheManager.process_counts``), else all of them."""
    own = getattr(manager, "process_counts", None)
    if own is not None:
        return own
    return lambda region: region.counters()


class Exporter:
    """This process's Prometheus metrics and the regions whose counts it adds to them."""

    def __init__(self) -> None:
        from prometheus_client import CollectorRegistry, Counter, Histogram

        #: The regions' metrics only: what ``/metrics`` serves (never prometheus_client's default registry).
        self.registry = CollectorRegistry()
        labels = ["region", "backend"]
        self.counters = {
            name: Counter(f"regions_{name}", text, labels, registry=self.registry)
            for name, text in COUNTERS.items()
        }
        self.latency = Histogram(
            "regions_backend_latency_seconds", "Seconds of the backend calls the regions timed",
            labels, buckets=BUCKETS, registry=self.registry,
        )
        #: Their family names: what the view takes from the workers' files under PROMETHEUS_MULTIPROC_DIR.
        self.names = frozenset(m.name for c in (*self.counters.values(), self.latency) for m in c.describe())
        self.tracked: dict[int, _Tracked] = {}
        self.lock = threading.Lock()
        self.thread: threading.Thread | None = None
        self._throttle = Throttle("cache regions, Prometheus metrics: ", LOG_EVERY)

    def flush(self) -> None:
        """Add every region's new counts and timings to the metrics (the current manager's regions,
        and one last time those of a manager a settings change replaced)."""
        from django_regions import conf

        with self.lock:
            manager = conf.manager()
            current = manager.regions() if manager is not None else []
            for region in current:
                if id(region) not in self.tracked:
                    self.tracked[id(region)] = _Tracked(region, _own_counts(manager), self)
            keep = {id(region) for region in current}
            for key, tracked in list(self.tracked.items()):
                tracked.flush()
                if key not in keep:
                    del self.tracked[key]
                    tracked.region.on_timing = None

    def run(self) -> None:
        """The thread: flush every :func:`flush_every` seconds, for the life of the process."""
        me = threading.current_thread()
        while self.thread is me:
            try:
                time.sleep(flush_every())
                self.flush()
            except Exception as exc:  # never end the thread: the next flush may work
                self._throttle.warning("flushing failed: %s: %s", type(exc).__name__, exc)
                time.sleep(FLUSH_EVERY)

    def start(self) -> None:
        """Start the thread (a forked child's first flush is the thread's: no lock taken in the hook)."""
        thread = threading.Thread(target=self.run, name="regions-metrics", daemon=True)
        self.thread = thread
        thread.start()

    def after_fork_in_child(self) -> None:
        """The parent's unflushed counts and timings are its own: start from the child's."""
        self.lock = threading.Lock()
        for tracked in self.tracked.values():
            tracked.samples.clear()
            tracked.last = tracked.own(tracked.region)  # the fleet's at-fork hook ran before this one
        self.start()


_exporter: Exporter | None = None
_exporter_lock = threading.Lock()
_forking = False


def start() -> Exporter:
    """This process's exporter, its thread started (once); needs ``prometheus_client``."""
    global _exporter
    with _exporter_lock:
        if _exporter is None:
            exporter = Exporter()
            exporter.flush()  # the regions' timing hooks are in place before their next call
            exporter.start()
            _exporter = exporter
        return _exporter


def flush() -> None:
    """Add this process's new counts to the metrics now (the view does before each scrape)."""
    start().flush()


def _before_fork() -> None:
    global _forking
    if _exporter is not None:  # no flush (no prometheus_client lock held) while the process forks
        _forking = _exporter.lock.acquire(timeout=5)


def _after_fork_in_parent() -> None:
    global _forking
    if _exporter is not None and _forking:
        _forking = False
        _exporter.lock.release()


def _after_fork_in_child() -> None:
    global _exporter_lock, _forking
    _exporter_lock, _forking = threading.Lock(), False
    if _exporter is not None:
        _exporter.after_fork_in_child()


os.register_at_fork(before=_before_fork, after_in_parent=_after_fork_in_parent,
                    after_in_child=_after_fork_in_child)


@never_cache
def metrics_view(request: HttpRequest) -> HttpResponse:
    """The regions' metrics in Prometheus's text format: every worker's sum under
    ``PROMETHEUS_MULTIPROC_DIR``, else this process's. Only theirs (:attr:`Exporter.registry`), not
    the rest of prometheus_client's default registry. 501 without ``prometheus_client``; 403 for a
    visitor the dashboard would refuse when ``REGIONS_METRICS_PRIVATE`` is ``True``."""
    if not available():
        return HttpResponse(NOT_INSTALLED, status=501, content_type="text/plain; charset=utf-8")
    if getattr(settings, "REGIONS_METRICS_PRIVATE", False) is True:
        from django_regions.views import may_see

        if may_see(request) is not True:
            return HttpResponse("forbidden: REGIONS_METRICS_PRIVATE is set\n", status=403,
                                content_type="text/plain; charset=utf-8")
    from prometheus_client import CollectorRegistry, generate_latest

    exporter = start()
    exporter.flush()
    registry = exporter.registry
    if multiprocess_dir():
        registry = CollectorRegistry()
        registry.register(_Summed(exporter.names))
    return HttpResponse(generate_latest(registry), content_type=TEXT_FORMAT)


class _Summed:
    """The families named ``names`` summed over every worker's file under ``PROMETHEUS_MULTIPROC_DIR``
    (where the other metrics of the project's processes are too)."""

    def __init__(self, names: frozenset[str]) -> None:
        from prometheus_client.multiprocess import MultiProcessCollector

        self.all = MultiProcessCollector(None)  # registered nowhere: collected through this one
        self.names = names

    def collect(self) -> Any:
        return (family for family in self.all.collect() if family.name in self.names)


if available():
    try:
        start()
    except Exception:  # whatever it is, /metrics answers 500 and the site works
        logger.exception("cache regions: the Prometheus metrics could not be set up")
