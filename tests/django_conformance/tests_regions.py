"""Django's own cache tests against ``django_regions.cache.RegionCache``.

Not collected by pytest: ``scripts/django-conformance`` copies this file into the ``cache`` test
package of Django's source distribution (as ``cache/tests_regions.py``) and runs it with Django's
``tests/runtests.py``. Each class runs Django's ``BaseCacheTests`` mixin, unchanged, over one kind of
region. The environment gives the memcached server (``REGIONS_MEMCACHED``) and a folder for file
regions (``REGIONS_FOLDER``).

Excluded, as Django excludes them for its memcached backends (``memcached_excluded_caches``): the
``cull`` and ``zero_cull`` aliases, whose ``OPTIONS`` ``MAX_ENTRIES`` / ``CULL_FREQUENCY`` are
Django's in-process culling. A region bounds its entries with its own options (memcached's memory,
a file region's ``max_entries``), so ``test_cull``, ``test_zero_cull`` and
``test_cull_delete_when_store_empty`` skip with Django's own reason, "Culling isn't implemented."
"""

import os

from django.test import TestCase, override_settings

import regions

from .tests import BaseCacheTests, caches_setting_for_tests, memcached_excluded_caches

FOLDER = os.environ["REGIONS_FOLDER"]
MEMCACHED = os.environ["REGIONS_MEMCACHED"]

regions.configure(
    {
        "functions": {"BACKEND": "memcached", "LOCATION": MEMCACHED, "TIMEOUT": 300},
        "files": {"BACKEND": "file", "LOCATION": os.path.join(FOLDER, "files"), "TIMEOUT": 300},
        "local": {"BACKEND": "memory", "TIMEOUT": 300},
        "synced": {"BACKEND": "memory", "OPTIONS": {"sync_with": "functions"}},
        "hot": {"BACKEND": "tiered", "OPTIONS": {"over": "functions"}},
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
