"""System checks: ``django_regions.E0xx`` and ``W010``... mirror :func:`regions.config.check`; W001-W003
add the rest (the core's warnings number from W010, the app's own from W001; errors: E001, E020,
E021, E022)."""

from __future__ import annotations

import difflib
from typing import Any

from django.core import checks

from django_regions import conf, health, middleware
from regions.backends.file.folders import folder_exposure
from regions.manager import decorated

MIDDLEWARE_HINT = f"Add {conf.MIDDLEWARE_PATH!r} to MIDDLEWARE."


def _obj(region: str | None) -> str:
    return f"CACHE_REGIONS[{region!r}]" if region else "CACHE_REGIONS"


def check_config(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    """One ``django_regions.<id>`` message per problem in CACHE_REGIONS (same id as regions'
    Problem): an error, or a warning for a problem whose settings still work (W010)."""
    return [
        (checks.Error if p.is_error else checks.Warning)(
            p.message, hint=p.hint, obj=_obj(p.region), id=f"django_regions.{p.id}"
        )
        for p in conf.problems()
    ]


def check_middleware(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    """W001: a request region is configured but nothing opens request scopes, so it never caches."""
    names = conf.request_region_names()
    if not names or middleware.installed():
        return []
    return [
        checks.Warning(
            f"region {name!r} has BACKEND 'request' but RequestRegionMiddleware is not in MIDDLEWARE, "
            "so it never caches in views",
            hint=MIDDLEWARE_HINT,
            obj=_obj(name),
            id="django_regions.W001",
        )
        for name in names
    ]


def check_memcached(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    """W002: a memcached server of a region does not answer (cached functions then run uncached)."""
    messages: list[checks.CheckMessage] = []
    for name, opts in conf.normalized().items():
        if opts.get("BACKEND") != "memcached":
            continue
        for address in health.unreachable(opts.get("LOCATION")):
            messages.append(
                checks.Warning(
                    f"memcached server {address} of region {name!r} is not answering",
                    hint=f"Start memcached on {address} (e.g. `memcached -l 127.0.0.1 -p PORT`) "
                    "or fix LOCATION; until then the region's functions run uncached.",
                    obj=_obj(name),
                    id="django_regions.W002",
                )
            )
    return messages


def check_file_folders(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    """W003: a file region's folder is owned by another user or writable by group/others."""
    messages: list[checks.CheckMessage] = []
    for name, opts in conf.normalized().items():
        if opts.get("BACKEND") != "file" or not (exposure := folder_exposure(opts["LOCATION"])):
            continue
        what, remedy = exposure
        messages.append(
            checks.Warning(
                f"the folder {opts['LOCATION']} of region {name!r} {what}",
                hint=remedy,
                obj=_obj(name),
                id="django_regions.W003",
            )
        )
    return messages


REGION_CACHE = "django_regions.cache.RegionCache"


def check_region_caches(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    """E020: a ``CACHES`` alias on :class:`~django_regions.cache.RegionCache` whose ``LOCATION`` names
    no region of ``CACHE_REGIONS`` (Django-only checks number from E020; the core's from E001)."""
    from django.conf import settings

    if any(p.is_error for p in conf.problems()):
        return []  # E001-E008 say what is wrong with CACHE_REGIONS first
    names = set(conf.normalized())
    messages: list[checks.CheckMessage] = []
    for alias, params in (getattr(settings, "CACHES", None) or {}).items():
        if params.get("BACKEND") != REGION_CACHE:
            continue
        location = params.get("LOCATION")
        if isinstance(location, str) and location in names:
            continue
        listed = ", ".join(repr(n) for n in sorted(names)) or "none"
        messages.append(
            checks.Error(
                f"cache {alias!r} uses RegionCache with LOCATION {location!r}, which names no region",
                hint=f"Set CACHES[{alias!r}]['LOCATION'] to one of CACHE_REGIONS: {listed}.",
                obj=f"CACHES[{alias!r}]",
                id="django_regions.E020",
            )
        )
    return messages


def check_decorated_functions(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    """E021: a function decorated with ``@regions.region(name)`` whose region is not configured
    (its first call would raise UnknownRegion). Every function decorated so far counts, before or
    after the settings loaded; the URLconf is imported first, so the views' modules are in. A module
    imported only later (inside a function, by a task runner) is checked at its import instead: the
    decoration logs the unknown name."""
    if any(p.is_error for p in conf.problems()):
        return []  # E001-E008 say what is wrong with CACHE_REGIONS first
    _import_urlconf()
    names = sorted(conf.normalized())
    listed = ", ".join(repr(n) for n in names) or "none"
    messages: list[checks.CheckMessage] = []
    for function, region in sorted(decorated().items()):
        if region in names:
            continue
        close = difflib.get_close_matches(region, names, n=1)
        hint = f"Did you mean {close[0]!r}? " if close else ""
        messages.append(
            checks.Error(
                f"{function} is cached in region {region!r}, which CACHE_REGIONS does not configure "
                "(its first call would raise UnknownRegion)",
                hint=f"{hint}Configured regions: {listed}.",
                obj=function,
                id="django_regions.E021",
            )
        )
    return messages


def check_dashboard_links(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    """E022: ``REGIONS_DASHBOARD_LINKS`` is not a list of ``(label, url)`` pairs whose urls resolve
    (the dashboard would fail on it)."""
    from django.core.exceptions import ImproperlyConfigured

    try:
        conf.dashboard_links()
    except ImproperlyConfigured as exc:
        return [checks.Error(str(exc), hint='Write e.g. [("Shop", "/")] or [("Shop", "shop:index")].',
                             obj="REGIONS_DASHBOARD_LINKS", id="django_regions.E022")]
    return []


def _import_urlconf() -> None:
    """Import the project's views (through the URLconf), as Django's URL check does: their cached
    functions are decorated then. A URLconf that fails to import is Django's ``urls`` check's to report."""
    from django.urls import get_resolver

    try:
        get_resolver().url_patterns  # noqa: B018 (imports the URLconf)
    except Exception:
        pass


def register() -> None:
    """Register the checks (called from the app config's ready())."""
    checks.register(check_config, checks.Tags.caches)
    checks.register(check_middleware, checks.Tags.caches)
    checks.register(check_memcached, checks.Tags.caches)
    checks.register(check_file_folders, checks.Tags.caches, checks.Tags.security)
    checks.register(check_region_caches, checks.Tags.caches)
    checks.register(check_decorated_functions, checks.Tags.caches)
    checks.register(check_dashboard_links, checks.Tags.urls)
