"""Running Django's own cache tests against ``RegionCache`` (``scripts/django-conformance``) and
checking what they report: shared by the ``test_django_conformance_*.py`` files.

The classes are split over several test files so that pytest-xdist (``--dist loadfile``) runs them
on several workers at once; :data:`SPLIT` says which file runs which classes, and
``test_django_conformance_built_on.py`` checks that together they run every class of
``tests/django_conformance/tests_regions.py``.
"""

from __future__ import annotations

import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
#: The module ``scripts/django-conformance`` copies into Django's test tree.
MODULE = ROOT / "tests" / "django_conformance" / "tests_regions.py"
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
#: Which test file (``test_django_conformance_<part>.py``) runs which classes: about the same time each.
#: The two BaseCacheTests classes of a part run at once (Django's ``--parallel 2``: mostly they wait,
#: on Django's own sleeps), so they never share a server: each clears its cache between tests, and a
#: synced region keeps its log in the region it is synced with (memcached's "functions", "redis").
SPLIT = {
    "memcached": ("RegionCacheMemcachedTests", "RegionCacheRedisSyncedTests"),
    "redis": ("RegionCacheRedisTests", "RegionCacheSyncedTests"),
    "tiered": ("RegionCacheTieredTests", "RegionCacheRedisTieredTests"),
    "local": ("RegionCacheFileTests", "RegionCacheMemoryTests"),
    "built_on": tuple(sorted(BUILT_ON)),
}
#: Django's ``--parallel`` of each part: the built-on tests all use the memcached "functions" region.
PARALLEL = {part: "1" if part == "built_on" else "2" for part in SPLIT}
#: What Django itself excludes for memcached and redis: its in-process culling (aliases "cull", "zero_cull").
CULLING = {"test_cull", "test_zero_cull", "test_cull_delete_when_store_empty"}
#: ``test_x (cache.tests_regions.Class.test_x) ... ok``; with a docstring, the outcome ends the next line.
LINE = re.compile(r"^(test\w+) \(cache\.tests_regions\.(\w+)\.\w+\)(.*)$")
#: Seconds Django's runner may take for one part (the whole suite took about 115 s serially).
TIMEOUT = 600


def check(part: str) -> None:
    """Run the classes of ``SPLIT[part]`` with Django's runner and assert that every test of each
    passed (BaseCacheTests classes: at least 50 tests, only the culling tests skipped, with Django's
    reason); print the figures."""
    classes = SPLIT[part]
    run = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "django-conformance"), "--", "--parallel", PARALLEL[part],
         "-v", "2", *(f"cache.tests_regions.{cls}" for cls in classes)],
        capture_output=True, text=True, timeout=TIMEOUT,
    )
    out = run.stdout + run.stderr
    results: dict[str, dict[str, str]] = {name: {} for name in classes}
    lines = out.splitlines()
    for i, line in enumerate(lines):
        found = LINE.match(line)
        if found:
            test, cls, rest = found.groups()
            if " ... " not in rest and i + 1 < len(lines):
                rest = lines[i + 1]
            assert cls in results, f"{cls} ran, but {part} asked only for {classes}\n{out[-3000:]}"
            results[cls][test] = rest.rpartition(" ... ")[2].strip()
    assert run.returncode == 0, out[-6000:]
    ran = int(re.search(r"^Ran (\d+) tests", out, re.M).group(1))  # type: ignore[union-attr]
    assert sum(map(len, results.values())) == ran, "some of Django's tests were not read from the output"
    figures = []
    for cls in sorted(set(classes) & BUILT_ON):
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
