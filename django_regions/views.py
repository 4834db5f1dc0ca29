"""The /regions/ dashboard: each region's figures, health and entries, read live.

It is read-only but shows server addresses: mount it only where operators may see it (or wrap
it, e.g. ``staff_member_required(dashboard)``).
"""

from __future__ import annotations

import os
import time

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from django_regions import conf
from django_regions.report import reports


def dashboard(request: HttpRequest) -> HttpResponse:
    """Render every configured region's hits, misses, hit rate, latency, health and entries."""
    manager = conf.manager()
    rows = reports(manager) if manager is not None else []
    hits = sum(r.hits for r in rows)
    misses = sum(r.misses for r in rows)
    context = {
        "regions": rows,
        "notices": conf.get_notices(),
        "configured": manager is not None,
        "totals": {
            "hits": hits,
            "misses": misses,
            "errors": sum(r.errors for r in rows),
            "hit_rate": f"{hits / (hits + misses) * 100:.1f}%" if hits + misses else "-",
            "healthy": sum(1 for r in rows if r.reachable),
            "count": len(rows),
        },
        "pid": os.getpid(),
        "generated": time.strftime("%Y-%m-%d %H:%M:%S"),
    }
    return render(request, "django_regions/dashboard.html", context)
