"""Runs every code block of README.md and docs/ (Sybil), against the suite's real memcached.

A ```python block runs, in order, in one namespace per page. A block that cannot run (a settings
fragment, code that needs a Django project around it) is preceded by ``<!-- skip: next "why" -->``;
shell, output and templates carry their own language tag (``sh``, ``text``, ``django``) and are not
run. Each page runs in a fresh working folder, with ``REGIONS_MEMCACHED`` naming the session's
memcached and ``REGIONS_REDIS`` the session's redis-server (the tests' ``memcached_server`` and
``redis_server`` fixtures), and leaves no manager behind.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sybil import Sybil
from sybil.parsers.markdown import PythonCodeBlockParser, SkipParser

from tests.conftest import memcached_server, redis_server  # noqa: F401 - the same fixtures, for the pages

ROOT = Path(__file__).resolve().parent


@pytest.fixture(scope="module")
def docs_page(
    request: pytest.FixtureRequest, memcached_server: str, redis_server: str  # noqa: F811
) -> Iterator[None]:
    """A page's surroundings: its own working folder and the session memcached's and redis's addresses."""
    from regions import manager as default

    # Functions defined on a page belong to a module named after it, as in an application.
    module = "docs_examples." + ".".join(request.path.relative_to(ROOT).with_suffix("").parts)
    for document in getattr(request.node, "documents", ()):
        document.namespace["__name__"] = module.replace("-", "_")

    servers = {"REGIONS_MEMCACHED": memcached_server, "REGIONS_REDIS": redis_server}
    before_cwd, before_env = os.getcwd(), {name: os.environ.get(name) for name in servers}
    before_manager = default._default.manager
    with tempfile.TemporaryDirectory(prefix="regions-docs-") as folder:
        os.chdir(folder)
        os.environ.update(servers)
        try:
            yield
        finally:
            os.chdir(before_cwd)
            for name, value in before_env.items():
                if value is None:
                    os.environ.pop(name, None)
                else:
                    os.environ[name] = value
            if default._default.manager is not before_manager:  # a page's regions.configure(...)
                with default._default.lock:
                    left, default._default.manager = default._default.manager, before_manager
                    default._default.epoch += 1
                if left is not None:
                    left.close()


def _teardown(namespace: dict[str, Any]) -> None:
    from regions import CacheManager

    for value in list(namespace.values()):
        if isinstance(value, CacheManager):
            value.close()


pytest_collect_file = Sybil(
    parsers=[PythonCodeBlockParser(), SkipParser()],
    patterns=["README.md", "docs/*.md", "docs/**/*.md"],
    fixtures=["docs_page"],
    teardown=_teardown,
    name="docs",
).pytest()
