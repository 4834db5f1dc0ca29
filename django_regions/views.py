"""The /regions/ dashboard: each region's figures (totals of every process of the deployment, as
this process's background thread last read them), health and entries.

Every view here is for operators (:func:`operators_only`): it shows server addresses, folders,
options and the pid, though never a cached value or key. A GET is cheap whatever the cache's size
and however slow a server is (see :mod:`django_regions.report`).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from functools import wraps
from typing import Any

from django.contrib.auth.views import redirect_to_login
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.cache import never_cache

from django_regions import conf
from django_regions.report import SAMPLE_LISTINGS, reports

View = Callable[..., HttpResponse]


def may_see(request: HttpRequest) -> bool | None:
    """Whether the request's user may see the regions views; ``None``: anonymous, may log in."""
    if conf.dashboard_public():
        return True
    user = getattr(request, "user", None)
    if user is None:  # no AuthenticationMiddleware: nobody can log in, so nobody may see it
        return False
    if not user.is_authenticated:
        return None
    permission = conf.dashboard_permission()
    if permission:
        return bool(user.has_perm(permission))
    return bool(user.is_active and user.is_staff)


def operators_only(view: View) -> View:
    """Staff only by default (``REGIONS_DASHBOARD_PERMISSION`` / ``REGIONS_DASHBOARD_PUBLIC`` change it).

    As Django's own access mixins do: an anonymous visitor is sent to ``LOGIN_URL`` (and back after
    logging in), a logged-in user who may not see it gets 403. Responses are never cached.
    """

    @wraps(view)
    def guarded(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        allowed = may_see(request)
        if allowed is None:
            return redirect_to_login(request.get_full_path())
        if not allowed:
            raise PermissionDenied("the cache regions dashboard is for staff")
        return view(request, *args, **kwargs)

    return never_cache(guarded)


@operators_only
def dashboard(request: HttpRequest) -> HttpResponse:
    """Render every configured region's hits, misses, hit rate, latency, health and entries."""
    manager = conf.manager()
    rows = reports(manager, probe=False, deployment=True) if manager is not None else []
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
        "sample_listings": SAMPLE_LISTINGS,
        "pid": os.getpid(),
        "generated": time.strftime("%Y-%m-%d %H:%M:%S"),
    }
    return render(request, "django_regions/dashboard.html", context)
