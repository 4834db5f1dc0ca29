"""Reading the regions settings from ``django.conf.settings``.

``CACHE_REGIONS``
    dict of region name -> settings (BACKEND, LOCATION, TIMEOUT, KEY_PREFIX, VERSION, OPTIONS),
    or a Beaker ``cache_opts`` dict, passed unchanged to :func:`regions.configure`.
``REGIONS_KEY_PREFIX``
    optional prefix applied to every key of every region (default ``""``).
``REGIONS_NOTICES``
    optional list of messages (e.g. "memcached not reachable, using memory") that the app logs
    at start-up and the dashboard shows.
``REGIONS_DASHBOARD_PERMISSION``
    who may open the views of ``django_regions.urls`` (the /regions/ dashboard): ``None`` (default)
    for active staff users; a permission name (``"app_label.codename"``) for users holding it,
    staff or not (superusers hold every permission).
``REGIONS_DASHBOARD_PUBLIC``
    ``True`` opens those views to everyone, anonymous visitors included (default ``False``).
``REGIONS_DASHBOARD_LINKS``
    links shown before "Regions" in the dashboard's header: a list of ``(label, url)`` pairs, the
    url a path or a URL name (default none), e.g. ``[("Shop", "/")]``.
``REGIONS_STATS_EVERY``
    seconds between two publications of this process's figures for the deployment-wide stats
    (default 5, :mod:`regions.fleet`; ``0``: never publish).
"""

from __future__ import annotations

import logging
from typing import Any

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.shortcuts import resolve_url
from django.urls import NoReverseMatch
from django.utils.crypto import salted_hmac

import regions
from regions.config import Problem, check, normalize
from regions.manager import disable

logger = logging.getLogger("django_regions")

#: Settings whose change (override_settings, pytest-django's ``settings`` fixture) rebuilds the manager.
WATCHED_SETTINGS = frozenset(
    {"CACHE_REGIONS", "REGIONS_KEY_PREFIX", "REGIONS_STATS_EVERY", "SECRET_KEY", "SECRET_KEY_FALLBACKS"}
)
MIDDLEWARE_PATH = "django_regions.middleware.RequestRegionMiddleware"


def get_config() -> Any:
    """The ``CACHE_REGIONS`` setting as written (``{}`` when absent)."""
    return getattr(settings, "CACHE_REGIONS", None) or {}


def get_key_prefix() -> str:
    """The optional global ``REGIONS_KEY_PREFIX`` setting."""
    return getattr(settings, "REGIONS_KEY_PREFIX", "") or ""


def get_notices() -> list[str]:
    """Operator-facing notices from ``REGIONS_NOTICES`` (e.g. a memcached fallback)."""
    return [str(n) for n in getattr(settings, "REGIONS_NOTICES", None) or []]


def dashboard_permission() -> str | None:
    """``REGIONS_DASHBOARD_PERMISSION``: the permission the dashboard needs (``None``: staff status)."""
    return getattr(settings, "REGIONS_DASHBOARD_PERMISSION", None) or None


def dashboard_public() -> bool:
    """``REGIONS_DASHBOARD_PUBLIC``: whether anyone, anonymous visitors included, may see the dashboard."""
    return getattr(settings, "REGIONS_DASHBOARD_PUBLIC", False) is True


def dashboard_links() -> list[tuple[str, str]]:
    """``REGIONS_DASHBOARD_LINKS``: ``(label, href)`` pairs, each URL name resolved."""
    links = getattr(settings, "REGIONS_DASHBOARD_LINKS", None) or []
    try:
        return [(str(label), resolve_url(url)) for label, url in links]
    except (TypeError, ValueError, NoReverseMatch) as exc:
        raise ImproperlyConfigured(
            f"REGIONS_DASHBOARD_LINKS must be a list of (label, url) pairs, each url a path or a URL "
            f"name, not {links!r} ({type(exc).__name__}: {exc}); e.g. [(\"Shop\", \"/\")]"
        ) from exc


def problems() -> list[Problem]:
    """Problems :func:`regions.config.check` finds in the current settings."""
    return check(get_config())


def normalized() -> dict[str, dict[str, Any]]:
    """Normalized region settings, or ``{}`` when the settings have problems (reported by checks)."""
    try:
        return normalize(get_config())
    except regions.ConfigurationError:
        return {}


def build() -> regions.CacheManager | None:
    """(Re)build the process default manager from settings.

    Invalid settings do not raise here: they are logged, the default manager is cleared (a cached
    call then raises the ConfigurationError naming the problem), and ``manage.py check`` (run by
    runserver/migrate) reports them as ``django_regions.E0xx``.
    """
    secret, fallbacks = signing_secrets()
    try:
        return regions.configure(
            get_config(), key_prefix=get_key_prefix(), secret=secret, secret_fallbacks=fallbacks,
            publish_every=getattr(settings, "REGIONS_STATS_EVERY", None),
        )
    except regions.ConfigurationError as exc:
        logger.error("CACHE_REGIONS is invalid, regions are disabled: %s (run manage.py check)", exc)
        # every cached call then raises this, not "not configured" (gunicorn and the shell run no checks)
        disable(regions.ConfigurationError(
            f"cache regions are disabled because CACHE_REGIONS is invalid: {exc} "
            "(`manage.py check` lists every problem)",
            region=exc.region, option=exc.option,
        ))
        return None


#: Salt of the entry-signing secret derived from SECRET_KEY (never SECRET_KEY itself).
SIGNING_SALT = "django_regions.entries"


def signing_secrets() -> tuple[str | None, list[str]]:
    """The secret entries are signed with, from ``SECRET_KEY``, and the older ones still accepted
    for reading, from ``SECRET_KEY_FALLBACKS``: rotating SECRET_KEY keeps the cache."""

    def derive(key: str | bytes) -> str:
        return salted_hmac(SIGNING_SALT, "regions", secret=key, algorithm="sha256").hexdigest()

    key = getattr(settings, "SECRET_KEY", "")
    if not key:
        return None, []
    return derive(key), [derive(k) for k in getattr(settings, "SECRET_KEY_FALLBACKS", [])]


def manager() -> regions.CacheManager | None:
    """The process default manager, or None when there is none (invalid settings)."""
    try:
        return regions.get_manager()
    except regions.RegionError:
        return None


def request_region_names() -> list[str]:
    """Names of the configured regions whose BACKEND is ``request``."""
    return [name for name, opts in normalized().items() if opts.get("BACKEND") == "request"]
