"""``manage.py regions`` (list), ``regions stats``, ``regions clear NAME [NAME...]``."""

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
    help = "List the cache regions (default), show their stats, or clear named regions."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("action", nargs="?", default="list", choices=["list", "stats", "clear"])
        parser.add_argument("names", nargs="*", metavar="NAME", help="region(s) to clear")

    def handle(self, *args: Any, action: str, names: list[str], **options: Any) -> None:
        manager = conf.manager()
        if manager is None:
            raise CommandError("CACHE_REGIONS is invalid or missing; run `manage.py check` for details")
        if action != "clear" and names:
            raise CommandError(f"`regions {action}` takes no region names")
        if action == "clear":
            self._clear(manager, names)
        elif action == "stats":
            self._stats(reports(manager))
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
        headers = ["REGION", "HITS", "MISSES", "HIT RATE", "ERRORS", "MEAN LATENCY"]
        body = [
            [r.name, str(r.hits), str(r.misses), r.hit_rate_percent, str(r.errors), r.latency_ms]
            for r in rows
        ]
        self.stdout.write(_table(headers, body))
        self.stdout.write("(figures count the calls made by this process since it started)")

    def _clear(self, manager: Any, names: list[str]) -> None:
        if not names:
            raise CommandError(f"name the region(s) to clear; configured: {', '.join(manager)}")
        unknown = [n for n in names if n not in manager]
        if unknown:
            raise CommandError(
                f"unknown region(s): {', '.join(unknown)}; configured regions: {', '.join(manager)}"
            )
        for name in dict.fromkeys(names):
            manager[name].clear()
            self.stdout.write(self.style.SUCCESS(f"cleared region {name!r}"))
