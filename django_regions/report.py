"""Per-region figures shared by ``manage.py regions`` and the /regions/ dashboard."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import regions


@dataclass(frozen=True)
class RegionReport:
    """What an operator wants to know about one region, read from the live manager."""

    name: str
    backend: str
    location: str
    timeout: str
    reachable: bool
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
        return "-" if self.entries is None else str(self.entries)


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


def report(region: Any) -> RegionReport:
    """Figures for one :class:`regions.Region` (pings it and counts its entries)."""
    stats = region.stats()
    return RegionReport(
        name=region.name,
        backend=region.backend,
        location=format_location(region.location, region.backend),
        timeout="end of request" if region.backend == "request" else format_timeout(region.timeout),
        reachable=bool(region.ping()),
        entries=region.count(),
        hits=int(stats.get("hits", 0)),
        misses=int(stats.get("misses", 0)),
        errors=int(stats.get("errors", 0)),
        sets=int(stats.get("sets", 0)),
        hit_rate=stats.get("hit_rate"),
        mean_latency=stats.get("mean_latency"),
        key_prefix=getattr(region, "key_prefix", "") or "-",
        version=getattr(region, "version", 1),
        options=", ".join(f"{k}={v!r}" for k, v in sorted((region.options or {}).items())) or "-",
    )


def reports(manager: regions.CacheManager) -> list[RegionReport]:
    """Figures for every region of ``manager``, in configuration order."""
    return [report(manager[name]) for name in manager]
