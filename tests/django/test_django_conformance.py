"""Django's own cache test suite (``BaseCacheTests`` from Django's source distribution) passes
against ``RegionCache`` over every kind of region, and so do Django's tests of what is built on the
cache API (cache_page, CacheMiddleware, cache utilities, i18n keys): run by ``scripts/django-conformance``."""

from __future__ import annotations

import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
#: BaseCacheTests over each kind of region.
CLASSES = {
    "RegionCacheMemcachedTests", "RegionCacheFileTests", "RegionCacheMemoryTests",
    "RegionCacheSyncedTests", "RegionCacheTieredTests",
    "RegionCacheRedisTests", "RegionCacheRedisSyncedTests", "RegionCacheRedisTieredTests",
}
#: Django's tests of cache_page, CacheMiddleware, the cache utilities and i18n keys, over regions.
BUILT_ON = {
    "RegionCacheUtils", "RegionPrefixedCacheUtils", "RegionCacheHEADTest", "RegionCacheI18nTest",
    "RegionPrefixedCacheI18nTest", "RegionCacheMiddlewareTest", "RegionTemplateResponseTest",
}
#: What Django itself excludes for memcached and redis: its in-process culling (aliases "cull", "zero_cull").
CULLING = {"test_cull", "test_zero_cull", "test_cull_delete_when_store_empty"}
#: ``test_x (cache.tests_regions.Class.test_x) ... ok``; with a docstring, the outcome ends the next line.
LINE = re.compile(r"^(test\w+) \(cache\.tests_regions\.(\w+)\.\w+\)(.*)$")


@pytest.mark.timeout(960)  # Django's runner, a subprocess bounded by its own 900 s below
def test_django_cache_suite_passes_on_every_region_kind() -> None:
    run = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "django-conformance")],
        capture_output=True, text=True, timeout=900,
    )
    out = run.stdout + run.stderr
    results: dict[str, dict[str, str]] = {name: {} for name in CLASSES | BUILT_ON}
    lines = out.splitlines()
    for i, line in enumerate(lines):
        found = LINE.match(line)
        if found:
            test, cls, rest = found.groups()
            if " ... " not in rest and i + 1 < len(lines):
                rest = lines[i + 1]
            results[cls][test] = rest.rpartition(" ... ")[2].strip()
    assert run.returncode == 0, out[-6000:]
    ran = int(re.search(r"^Ran (\d+) tests", out, re.M).group(1))  # type: ignore[union-attr]
    assert sum(map(len, results.values())) == ran, "some of Django's tests were not read from the output"
    figures = []
    for cls in sorted(BUILT_ON):
        outcomes = results.pop(cls)
        assert outcomes and all(o == "ok" for o in outcomes.values()), f"{cls}: {outcomes}"
        figures.append(f"{cls}: ran {len(outcomes)}, passed {len(outcomes)}")
    for cls, outcomes in sorted(results.items()):
        kinds = Counter("ok" if o == "ok" else o.split()[0] for o in outcomes.values())
        assert len(outcomes) >= 50, f"{cls}: only {len(outcomes)} of Django's tests ran\n{out[-3000:]}"
        skipped = {t: o for t, o in outcomes.items() if o != "ok"}
        assert set(skipped) == CULLING, f"{cls}: not passed: {skipped}"
        assert all("Culling isn't implemented" in o for o in skipped.values()), skipped
        figures.append(f"{cls}: ran {len(outcomes)}, passed {kinds['ok']}, skipped {len(skipped)}")
    print("\n" + "\n".join(figures))
