"""Django's own cache test suite (``BaseCacheTests`` from Django's source distribution) passes
against ``RegionCache`` over a memcached region, and a memory region synced through Redis (the
two run at once: they share no server)
(``scripts/django-conformance``). The other kinds of region: the other
``test_django_conformance_*.py`` files (see ``tests/django/conformance.py``)."""

from __future__ import annotations

import pytest

from tests.django.conformance import TIMEOUT, check


@pytest.mark.timeout(TIMEOUT + 60)  # Django's runner, a subprocess bounded by TIMEOUT
def test_django_cache_suite_passes() -> None:
    check("memcached")
