"""Settings of the example project.

Environment:
    REGIONS_MEMCACHED   memcached address for the "functions" region, e.g. "127.0.0.1:11311".
                        Absent or not answering: the region falls back to an in-process memory
                        region, a warning is logged and every page shows a notice.
    REGIONS_REDIS       redis:// URL of a Redis for the "rates" region (scripts/serve sets it when it
                        can start redis-server). Absent or empty: the example has no Redis region.
    REGIONS_VAR_DIR     where the SQLite database and the file region live (default: ./var).
    DJANGO_DEBUG        "0" to turn DEBUG off (default on: this is a demo).
    DJANGO_SECRET_KEY   secret key (a fixed development key is used otherwise).
"""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

from django_regions.fallback import memcached_or_memory

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(os.environ.get("REGIONS_VAR_DIR") or BASE_DIR / "var")

SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "dev-only-not-secret-regions-example")
DEBUG = os.environ.get("DJANGO_DEBUG", "1") != "0"
ALLOWED_HOSTS = ["127.0.0.1", "localhost", "[::1]", "testserver"]

INSTALLED_APPS = [
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.staticfiles",
    "django_regions",
    "config.shop",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django_regions.middleware.RequestRegionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "config.urls"
WSGI_APPLICATION = "config.wsgi.application"
ASGI_APPLICATION = "config.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django_regions.context_processors.notices",
            ],
        },
    },
]

DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": VAR_DIR / "db.sqlite3",
    }
}

# Django's cache framework on regions (django_regions.cache.RegionCache): cache_page, {% cache %},
# CacheMiddleware and third-party apps store in a region, with its key guard, failure policy,
# signing and stats. LOCATION names a region of CACHE_REGIONS.
CACHES = {
    "default": {"BACKEND": "django_regions.cache.RegionCache", "LOCATION": "functions"},
    "pages": {"BACKEND": "django_regions.cache.RegionCache", "LOCATION": "files", "TIMEOUT": 600},
}

# --- cache regions -------------------------------------------------------------------------------
_functions, _notice = memcached_or_memory(os.environ.get("REGIONS_MEMCACHED"), timeout=60 * 60)

CACHE_REGIONS = {
    # results of functions, keyed by their arguments (per user: the User instance is an argument)
    "functions": _functions,
    # parsed import files: long-lived, on disk
    "files": {"BACKEND": "file", "LOCATION": VAR_DIR / "cache" / "files", "TIMEOUT": 5 * 24 * 60 * 60},
    # lives for one request (RequestRegionMiddleware)
    "request": {"BACKEND": "request"},
    # in each process, a dict lookup per hit; `manage.py regions clear local` (or a clear() in any
    # worker) reaches every worker within sync_interval through the shared region's storage
    "local": {
        "BACKEND": "memory",
        "OPTIONS": {
            "sync_with": "functions" if _functions["BACKEND"] == "memcached" else "files",
            "sync_interval": 1.0,
        },
    },
    # a per-process LRU in front of the shared region: a value computed by one worker is read by
    # the others from the shared tier, then served from their own memory
    "hot": {
        "BACKEND": "tiered",
        "OPTIONS": {"over": "functions" if _functions["BACKEND"] == "memcached" else "files"},
    },
}
# exchange rates (config.shop.services.exchange_rate, /api/rate/<currency>/): short-lived, in Redis
# when the example was given one (REGIONS_REDIS; scripts/serve starts redis-server when it can), else in
# each process's memory, as "functions" falls back without memcached (the rate view says which). The
# region always exists: a function decorated for a region that is not configured is an error (E021).
CACHE_REGIONS["rates"] = (
    {"BACKEND": "redis", "LOCATION": os.environ["REGIONS_REDIS"], "TIMEOUT": 60,
     "OPTIONS": {"socket_timeout": 0.5, "connect_timeout": 0.5}}
    if os.environ.get("REGIONS_REDIS")
    else {"BACKEND": "memory", "TIMEOUT": 60}
)
REGIONS_KEY_PREFIX = "example"
REGIONS_NOTICES = [_notice] if _notice else []
# The /regions/ dashboard is for staff only. This demo has no login, so it is open while DEBUG is
# on (the default here); never set REGIONS_DASHBOARD_PUBLIC = True in production.
REGIONS_DASHBOARD_PUBLIC = DEBUG
# The dashboard's header links back to the shop (a URL name or a path; none by default).
REGIONS_DASHBOARD_LINKS = [("Example shop", "shop:index")]

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "loggers": {
        "django_regions": {"handlers": ["console"], "level": "INFO"},
        "regions": {"handlers": ["console"], "level": "WARNING"},
    },
}

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = False
USE_TZ = True
STATIC_URL = "static/"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

VAR_DIR.mkdir(parents=True, exist_ok=True)

# --- django-debug-toolbar with the regions panel (pip install -e '.[toolbar]') --------------------
# In DEBUG, when installed, and not under tests (the toolbar's own advice: tests run with DEBUG off).
# Its middleware goes inside RequestRegionMiddleware: the panel then lists the request region's
# entries as they are at the end of the view, before the request scope drops them.
TESTING = "test" in sys.argv or "PYTEST_VERSION" in os.environ
if DEBUG and not TESTING and importlib.util.find_spec("debug_toolbar") is not None:
    from debug_toolbar.settings import PANELS_DEFAULTS

    INSTALLED_APPS.append("debug_toolbar")
    MIDDLEWARE.insert(
        MIDDLEWARE.index("django_regions.middleware.RequestRegionMiddleware") + 1,
        "debug_toolbar.middleware.DebugToolbarMiddleware",
    )
    DEBUG_TOOLBAR_PANELS = [*PANELS_DEFAULTS, "django_regions.panels.RegionsPanel"]
    INTERNAL_IPS = ["127.0.0.1"]
