"""Django's tests of what is built on the cache API (cache_page, CacheMiddleware, cache utilities,
i18n keys) pass over regions (``scripts/django-conformance``); and the ``test_django_conformance_*.py``
files together run every class of ``tests/django_conformance/tests_regions.py``."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.django.conformance import BUILT_ON, CLASSES, MODULE, SPLIT, TIMEOUT, check


@pytest.mark.timeout(TIMEOUT + 60)  # Django's runner, a subprocess bounded by TIMEOUT
def test_django_tests_of_what_is_built_on_the_cache_pass() -> None:
    check("built_on")


def test_the_parts_run_every_class_once() -> None:
    """The split loses no class: each class of the module is in exactly one part, and each part has
    a test file that runs it."""
    defined = {node.name for node in ast.parse(MODULE.read_text()).body if isinstance(node, ast.ClassDef)}
    assert defined == CLASSES | BUILT_ON
    parts = [cls for classes in SPLIT.values() for cls in classes]
    assert sorted(parts) == sorted(defined)
    here = Path(__file__).parent
    for part in SPLIT:
        source = (here / f"test_django_conformance_{part}.py").read_text()
        assert f'check("{part}")' in source, f"no test file runs the {part} part"
