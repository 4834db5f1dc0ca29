"""Per-region figures shared by ``manage.py regions`` and the /regions/ dashboard.

``manage.py regions`` probes: it pings every backend and counts every entry. The dashboard must stay
cheap whatever the size of the cache and however slow a server is, so it reads only what the process
already knows: a memcached region's health from its circuit breakers (no network call), and a file
region's entries from a bounded sample of its folders (:func:`sample_entry_files`). Neither ever
reads an entry, so no cached value can be shown.

With ``deployment=True`` the hits, misses... are the totals of every process of the deployment
(:meth:`regions.CacheManager.deployment_stats`); the dashboard takes what the manager's background
thread read last, so its GET still never waits for a server.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

import regions
from regions.backends.file import FileStore
from regions.backends.file.layout import ENTRY_FOLDER_LEVELS, ENTRY_SUFFIX

#: Folders a dashboard GET lists, at most, to estimate a file region's entries.
SAMPLE_LISTINGS = 64
#: Folder levels between a file region's LOCATION and its entry files: namespace/aa
#: (regions.backends.file.layout).
FILE_LEVELS = 1 + ENTRY_FOLDER_LEVELS


@dataclass(frozen=True)
class ServerHealth:
    """One memcached server as its circuit breaker sees it (:meth:`MemcachedStore.health`)."""

    server: str
    down: bool
    down_for: float | None
    outages: int
    pending: int
    #: What marked it down the last time (``"TimeoutError: ..."``), None before any outage.
    cause: str | None = None

    @property
    def text(self) -> str:
        if not self.down:
            if not self.outages:
                return "up"
            last = f", the last: {self.cause}" if self.cause else ""
            return f"up (after {self.outages} outage(s){last})"
        cause = f" ({self.cause})" if self.cause else ""  # a third-party store may not say
        pending = f", {self.pending} invalidation(s) to replay" if self.pending else ""
        return f"down for {self.down_for or 0:.1f} s{cause}{pending}"


@dataclass(frozen=True)
class Sample:
    """A file region's entry files, counted in at most :data:`SAMPLE_LISTINGS` folders."""

    entries: int
    exact: bool  # every folder was listed: a count (of entry files, expired ones included)
    listings: int


@dataclass(frozen=True)
class RegionReport:
    """What an operator wants to know about one region, read from the live manager."""

    name: str
    backend: str
    location: str
    timeout: str
    reachable: bool | None  # None: not checked (a backend the dashboard cannot ask cheaply)
    entries: int | None
    hits: int
    misses: int
    errors: int
    sets: int
    hit_rate: float | None
    mean_latency: float | None
    key_prefix: str = ""
    version: int = 1
    options: str = "-"
    entries_estimated: bool = False
    servers: tuple[ServerHealth, ...] = field(default_factory=tuple)
    #: Processes whose figures are summed here; ``scope``: "deployment", or "process" (this
    #: process's figures: the region has no shared storage, or ``scope_error`` says why).
    processes: int = 1
    scope: str = "process"
    scope_error: str | None = None

    @property
    def scope_text(self) -> str:
        if self.scope == "deployment":
            return "deployment"
        return "this-process" if self.scope_error else "per-process"

    @property
    def hit_rate_percent(self) -> str:
        return "-" if self.hit_rate is None else f"{self.hit_rate * 100:.1f}%"

    @property
    def hit_rate_width(self) -> int:
        """Hit rate as an integer 0..100 (for the dashboard's bar)."""
        return 0 if self.hit_rate is None else round(self.hit_rate * 100)

    @property
    def latency_ms(self) -> str:
        return "-" if self.mean_latency is None else f"{self.mean_latency * 1000:.3f} ms"

    @property
    def entries_text(self) -> str:
        if self.entries is None:
            return "-"
        return f"~{self.entries:,}" if self.entries_estimated else str(self.entries)


def sample_entry_files(root: Any, suffix: str = ENTRY_SUFFIX, budget: int = SAMPLE_LISTINGS,
                       levels: int = FILE_LEVELS) -> Sample:
    """Estimate the entry files under ``root`` listing at most ``budget`` folders.

    Entry files are spread evenly over the ``aa`` folders by a digest, so the files in a few
    evenly spaced folders, scaled by the folders not listed, estimate the whole. Exact when every
    folder fits in the budget. Entry files are counted by name: none is opened.
    """
    found, listed, exact = _sample(os.fspath(root), levels, budget, suffix)
    return Sample(round(found), exact, listed)


def _sample(folder: str, levels: int, budget: int, suffix: str) -> tuple[float, int, bool]:
    """``(estimated entry files under folder, folders listed, exact)``."""
    try:
        with os.scandir(folder) as it:
            items = list(it)
    except OSError:  # gone meanwhile (a cull removes emptied folders), or unreadable
        return 0.0, 1, True
    here = float(sum(1 for e in items if e.name.endswith(suffix)))
    subdirs = [] if levels == 0 else sorted(
        e.path for e in items if not e.name.startswith(".") and e.is_dir(follow_symlinks=False)
    )
    if not subdirs:
        return here, 1, True
    listed, budget = 1, budget - 1
    take = min(len(subdirs), max(1, budget // levels))  # each needs `levels` listings to reach files
    below, exact = 0.0, take == len(subdirs)
    for i in range(take):
        child = subdirs[i * len(subdirs) // take]
        found, used, child_exact = _sample(child, levels - 1, max(1, budget // (take - i)), suffix)
        below, listed, budget, exact = below + found, listed + used, budget - used, exact and child_exact
    return here + below * len(subdirs) / take, listed, exact


def _linked(region: regions.Region) -> str | None:
    """Where a synced or tiered region keeps what it shares: ``in-process, synced via 'functions'``."""
    options = region.options
    if options.get("sync_with"):
        return f"in-process, synced via {options['sync_with']!r}"
    if region.backend == "tiered":
        return f"in-process over {options.get('over')!r}"
    return None


def format_location(location: Any, backend: str = "") -> str:
    if location is None or location == "":
        return "in-process" if backend in ("memory", "request") else "-"
    if isinstance(location, list | tuple) and all(isinstance(x, str) for x in location):
        return ", ".join(location)
    return str(location)


def format_timeout(timeout: Any) -> str:
    if timeout is None:
        return "never"
    seconds = float(timeout)
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)} {unit}"
    return f"{seconds:g} s"


def report(region: Any, *, probe: bool = True, stats: dict[str, Any] | None = None) -> RegionReport:
    """Figures for one :class:`regions.Region`.

    ``probe``: ping the backend and count every entry (as ``manage.py regions`` does). Otherwise only
    cheap figures (see the module docstring): a GET of the dashboard never waits for a server.
    ``stats``: the region's row of ``deployment_stats()`` (default: this process's ``stats()``).
    """
    if stats is None:
        stats = region.stats()
    store = region.store
    servers: tuple[ServerHealth, ...] = ()
    estimated = False
    reachable: bool | None
    if probe:
        reachable, entries = bool(region.ping()), region.count()
    elif callable(health := getattr(store, "health", None)):
        servers = tuple(
            ServerHealth(str(h["server"]), bool(h["down"]), h["down_for"], int(h["outages"]),
                         int(h["pending"]), h.get("cause"))
            for h in health()
        )
        reachable, entries = not any(s.down for s in servers), None
    elif isinstance(store, FileStore):
        sample = sample_entry_files(store.root)
        reachable, entries, estimated = bool(region.ping()), sample.entries, not sample.exact
    elif not store.io:  # in-process (memory, request): asking costs nothing
        reachable, entries = bool(region.ping()), region.count()
    else:  # another backend: asking it might wait on a network
        reachable, entries = None, None
    return RegionReport(
        name=region.name,
        backend=region.backend,
        location=_linked(region) or format_location(region.location, region.backend),
        timeout="end of request" if region.backend == "request" else format_timeout(region.timeout),
        reachable=reachable,
        entries=entries,
        hits=int(stats.get("hits", 0)),
        misses=int(stats.get("misses", 0)),
        errors=int(stats.get("errors", 0)),
        sets=int(stats.get("sets", 0)),
        hit_rate=stats.get("hit_rate"),
        mean_latency=stats.get("mean_latency"),
        key_prefix=getattr(region, "key_prefix", "") or "-",
        version=getattr(region, "version", 1),
        options=", ".join(f"{k}={v!r}" for k, v in sorted((region.options or {}).items())) or "-",
        entries_estimated=estimated,
        servers=servers,
        processes=int(stats.get("processes", 1)),
        scope=str(stats.get("scope", "process")),
        scope_error=stats.get("error"),
    )


def reports(
    manager: regions.CacheManager, *, probe: bool = True, deployment: bool = False
) -> list[RegionReport]:
    """Figures for every region of ``manager``, in configuration order (see :func:`report`);
    ``deployment``: totals of every process (read now when ``probe``, else as last read)."""
    totals = manager.deployment_stats(wait=probe) if deployment else {}
    return [report(manager[name], probe=probe, stats=totals.get(name)) for name in manager]
