"""``manage.py regions`` (list), ``regions stats``, ``regions clear NAME...``, ``regions cull [NAME...]``."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from django_regions import conf
from django_regions.report import RegionReport, reports


def _table(headers: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True))]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
    return "\n".join(line.rstrip() for line in lines)


class Command(BaseCommand):
    help = (
        "List the cache regions (default), show their stats, clear named regions, or cull file regions "
        "(remove expired entries and dead temporary files; all file regions unless named)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("action", nargs="?", default="list", choices=["list", "stats", "clear", "cull"])
        parser.add_argument("names", nargs="*", metavar="NAME", help="region(s) to clear or cull")

    def handle(self, *args: Any, action: str, names: list[str], **options: Any) -> None:
        manager = conf.manager()
        if manager is None:
            raise CommandError("CACHE_REGIONS is invalid or missing; run `manage.py check` for details")
        if action not in ("clear", "cull") and names:
            raise CommandError(f"`regions {action}` takes no region names")
        if action == "clear":
            self._clear(manager, names)
        elif action == "cull":
            self._cull(manager, names)
        elif action == "stats":
            self._stats(reports(manager, deployment=True))
        else:
            self._list(reports(manager))

    def _list(self, rows: list[RegionReport]) -> None:
        headers = ["REGION", "BACKEND", "LOCATION", "TIMEOUT", "REACHABLE", "ENTRIES"]
        body = [
            [r.name, r.backend, r.location, r.timeout, "yes" if r.reachable else "NO", r.entries_text]
            for r in rows
        ]
        self.stdout.write(_table(headers, body))
        for notice in conf.get_notices():
            self.stdout.write(self.style.WARNING(f"notice: {notice}"))

    def _stats(self, rows: list[RegionReport]) -> None:
        """Totals of every process of the deployment (this command counts itself only if it made
        calls, which it does not: it reads what the others published)."""
        headers = ["REGION", "HITS", "MISSES", "HIT RATE", "ERRORS", "MEAN LATENCY", "PROCESSES", "SCOPE"]
        body = [
            [r.name, str(r.hits), str(r.misses), r.hit_rate_percent, str(r.errors), r.latency_ms,
             str(r.processes), r.scope_text]
            for r in rows
        ]
        self.stdout.write(_table(headers, body))
        self.stdout.write("(deployment: totals of every live process that used the region, each publishing "
                          "its figures every few seconds; this process counts only if it made calls)")
        local = [repr(r.name) for r in rows if r.scope_text == "per-process"]
        if local:
            self.stdout.write(f"(per-process: no shared storage for {', '.join(local)}: "
                              "the figures are this process's)")
        for r in rows:
            if r.scope_error:
                self.stdout.write(self.style.WARNING(
                    f"(this-process: region {r.name!r}: its shared storage failed ({r.scope_error}): "
                    "the figures are this process's only)"
                ))

    def _clear(self, manager: Any, names: list[str]) -> None:
        if not names:
            raise CommandError(f"name the region(s) to clear; configured: {', '.join(manager)}")
        _check_names(manager, names)
        failed = []
        for name in dict.fromkeys(names):
            if manager[name].store.shared is None:  # its entries live in other processes only
                self.stdout.write(_out_of_reach(manager[name]))
            elif manager[name].clear():
                self.stdout.write(self.style.SUCCESS(f"cleared region {name!r}"))
            else:
                failed.append(name)
        if failed:  # this process ends now: nobody would retry the clear
            raise CommandError(
                f"could not clear {', '.join(map(repr, failed))}: the backend did not answer "
                "(see the log above); run the command again when it does"
            )

    def _cull(self, manager: Any, names: list[str]) -> None:
        """Cull the named file regions, or every file region; other backends expire entries themselves."""
        _check_names(manager, names)
        culled = 0
        for name in dict.fromkeys(names or manager):
            cull = getattr(manager[name].store, "cull", None)
            if cull is not None:
                try:
                    removed = cull()
                except OSError as exc:
                    raise CommandError(f"culling region {name!r} failed: {exc}") from exc
                culled += 1
                self.stdout.write(self.style.SUCCESS(f"culled region {name!r}: removed {removed} file(s)"))
            elif names:
                backend = manager[name].backend
                self.stdout.write(f"region {name!r} ({backend}): nothing to cull, it expires entries itself")
        if not names and not culled:
            self.stdout.write("no file regions to cull")


def _out_of_reach(region: Any) -> str:
    """What is true of ``regions clear`` for a region whose entries never leave their process."""
    if region.backend == "request":
        return (f"region {region.name!r} (request): nothing to clear from here: its entries live inside "
                "each request and are gone when the request ends")
    return (f"region {region.name!r} ({region.backend}): nothing to clear from here: its entries live in "
            "the memory of each server process, out of this command's reach; restart them, or give the "
            "region OPTIONS sync_with so that a clear reaches every process")


def _check_names(manager: Any, names: list[str]) -> None:
    unknown = [n for n in names if n not in manager]
    if unknown:
        configured = ", ".join(manager)
        raise CommandError(f"unknown region(s): {', '.join(unknown)}; configured regions: {configured}")
