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

from django.conf import settings
from django.contrib.auth.views import redirect_to_login
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.cache import never_cache

from django_regions import conf
from django_regions.report import SAMPLE_LISTINGS, reports

View = Callable[..., HttpResponse]


#: Why a request may not see the views (the 403 page says it; never which permission, nor a setting's value).
NO_LOGIN = "no-login"  # the site has no AuthenticationMiddleware: nobody can sign in
NOT_STAFF = "not-staff"  # signed in, not an active staff user
NO_PERMISSION = "no-permission"  # signed in, lacks REGIONS_DASHBOARD_PERMISSION


def refusal(request: HttpRequest) -> str | None:
    """Why the request's user may not see the regions views (one of the constants above), ``""``
    for an anonymous visitor who may log in, ``None`` when they may."""
    if conf.dashboard_public():
        return None
    user = getattr(request, "user", None)
    if user is None:  # no AuthenticationMiddleware: nobody can log in, so nobody may see it
        return NO_LOGIN
    if not user.is_authenticated:
        return ""
    permission = conf.dashboard_permission()
    if permission:
        return None if user.has_perm(permission) else NO_PERMISSION
    return None if user.is_active and user.is_staff else NOT_STAFF


def may_see(request: HttpRequest) -> bool | None:
    """Whether the request's user may see the regions views; ``None``: anonymous, may log in."""
    why = refusal(request)
    return True if why is None else None if why == "" else False


def operators_only(view: View) -> View:
    """Staff only by default (``REGIONS_DASHBOARD_PERMISSION`` / ``REGIONS_DASHBOARD_PUBLIC`` change it).

    As Django's own access mixins do: an anonymous visitor is sent to ``LOGIN_URL`` (and back after
    logging in); anyone else who may not see it gets a 403 page saying why. Responses are never cached.
    """

    @wraps(view)
    def guarded(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        why = refusal(request)
        if why == "":
            return redirect_to_login(request.get_full_path())
        if why is not None:
            return forbidden(request, why)
        return view(request, *args, **kwargs)

    return never_cache(guarded)


def forbidden(request: HttpRequest, why: str) -> HttpResponse:
    """The 403 page: why this visitor may not see the dashboard, and what an operator can change.
    It names settings, never their values (which permission, who is staff)."""
    context = {
        "why": why,
        "debug_off": not settings.DEBUG,
        "links": conf.dashboard_links(),
        "notices": [],
    }
    return render(request, "django_regions/forbidden.html", context, status=403)


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
        "links": conf.dashboard_links(),
        "pid": os.getpid(),
        "generated": time.strftime("%Y-%m-%d %H:%M:%S"),
    }
    return render(request, "django_regions/dashboard.html", context)
