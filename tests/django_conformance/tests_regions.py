"""Django's own cache tests against ``django_regions.cache.RegionCache``.

Not collected by pytest: ``scripts/django-conformance`` copies this file into the ``cache`` test
package of Django's source distribution (as ``cache/tests_regions.py``) and runs it with Django's
``tests/runtests.py``. Each class runs Django's ``BaseCacheTests`` mixin, unchanged, over one kind of
region. The environment gives the memcached server (``REGIONS_MEMCACHED``), the redis-server
(``REGIONS_REDIS``, a ``redis://`` URL) and a folder for file regions (``REGIONS_FOLDER``).

Excluded, as Django excludes them for its memcached and redis backends (``memcached_excluded_caches``,
``redis_excluded_caches``: the same two aliases): the
``cull`` and ``zero_cull`` aliases, whose ``OPTIONS`` ``MAX_ENTRIES`` / ``CULL_FREQUENCY`` are
Django's in-process culling. A region bounds its entries with its own options (memcached's memory,
Redis's ``maxmemory`` policy, a file region's ``max_entries``), so ``test_cull``, ``test_zero_cull`` and
``test_cull_delete_when_store_empty`` skip with Django's own reason, "Culling isn't implemented."
"""

import os

from django.test import TestCase, override_settings

import regions

from .tests import BaseCacheTests, caches_setting_for_tests, memcached_excluded_caches

FOLDER = os.environ["REGIONS_FOLDER"]
MEMCACHED = os.environ["REGIONS_MEMCACHED"]
REDIS = os.environ["REGIONS_REDIS"]

regions.configure(
    {
        "functions": {"BACKEND": "memcached", "LOCATION": MEMCACHED, "TIMEOUT": 300},
        "files": {"BACKEND": "file", "LOCATION": os.path.join(FOLDER, "files"), "TIMEOUT": 300},
        "local": {"BACKEND": "memory", "TIMEOUT": 300},
        "synced": {"BACKEND": "memory", "OPTIONS": {"sync_with": "functions"}},
        "hot": {"BACKEND": "tiered", "OPTIONS": {"over": "functions"}},
        "redis": {"BACKEND": "redis", "LOCATION": REDIS, "TIMEOUT": 300},
        "redis-synced": {"BACKEND": "memory", "OPTIONS": {"sync_with": "redis"}},
        "redis-hot": {"BACKEND": "tiered", "OPTIONS": {"over": "redis"}},
    },
    secret="django-conformance",
)


def settings_for(region: str) -> dict:
    return caches_setting_for_tests(
        base={"BACKEND": "django_regions.cache.RegionCache", "LOCATION": region},
        exclude=memcached_excluded_caches,
    )


@override_settings(CACHES=settings_for("functions"))
class RegionCacheMemcachedTests(BaseCacheTests, TestCase):
    """A memcached region."""


@override_settings(CACHES=settings_for("redis"))
class RegionCacheRedisTests(BaseCacheTests, TestCase):
    """A redis region."""


@override_settings(CACHES=settings_for("redis-synced"))
class RegionCacheRedisSyncedTests(BaseCacheTests, TestCase):
    """A memory region synced through the redis one (its stream log)."""


@override_settings(CACHES=settings_for("redis-hot"))
class RegionCacheRedisTieredTests(BaseCacheTests, TestCase):
    """A tiered region over the redis one."""


@override_settings(CACHES=settings_for("files"))
class RegionCacheFileTests(BaseCacheTests, TestCase):
    """A file region."""


@override_settings(CACHES=settings_for("local"))
class RegionCacheMemoryTests(BaseCacheTests, TestCase):
    """An in-process memory region."""


@override_settings(CACHES=settings_for("synced"))
class RegionCacheSyncedTests(BaseCacheTests, TestCase):
    """A memory region synced through the memcached one."""


@override_settings(CACHES=settings_for("hot"))
class RegionCacheTieredTests(BaseCacheTests, TestCase):
    """A tiered region over the memcached one."""


# Django's tests of what is built on the cache API (cache_page, CacheMiddleware, the cache headers
# utilities, i18n-aware keys, TemplateResponse caching): each subclass replaces its "default" (and
# "other") locmem cache with RegionCache over a memcached region, keeping every other setting.
# They come from the module object, so that the loader runs only these subclasses here.
from . import tests as django_cache_tests  # noqa: E402

REGION_CACHES = {
    "default": {"BACKEND": "django_regions.cache.RegionCache", "LOCATION": "functions"},
    "other": {"BACKEND": "django_regions.cache.RegionCache", "LOCATION": "files", "TIMEOUT": "1"},
}


def _prefixed(prefix: str) -> dict:
    return {**REGION_CACHES, "default": {**REGION_CACHES["default"], "KEY_PREFIX": prefix}}


@override_settings(CACHES=REGION_CACHES)
class RegionCacheUtils(django_cache_tests.CacheUtils):
    """django.utils.cache (learn_cache_key, get_cache_key, patch_* headers) over a region."""


@override_settings(CACHES=_prefixed("cacheprefix"))
class RegionPrefixedCacheUtils(django_cache_tests.PrefixedCacheUtils):
    """The same with a KEY_PREFIX."""


@override_settings(CACHES=REGION_CACHES)
class RegionCacheHEADTest(django_cache_tests.CacheHEADTest):
    """HEAD requests through the cache middleware."""


@override_settings(CACHES=REGION_CACHES)
class RegionCacheI18nTest(django_cache_tests.CacheI18nTest):
    """Language- and timezone-aware cache keys."""


@override_settings(CACHES=_prefixed("cacheprefix"))
class RegionPrefixedCacheI18nTest(django_cache_tests.PrefixedCacheI18nTest):
    """The same with a KEY_PREFIX."""


@override_settings(CACHES=REGION_CACHES)
class RegionCacheMiddlewareTest(django_cache_tests.CacheMiddlewareTest):
    """CacheMiddleware and cache_page (the "other" alias is a file region with TIMEOUT 1)."""


@override_settings(CACHES=REGION_CACHES)
class RegionTemplateResponseTest(django_cache_tests.TestWithTemplateResponse):
    """Caching TemplateResponse objects."""
