"""Test settings: the example project's, with its var/ directory moved to a throw-away folder.

Tests point CACHE_REGIONS at the session's real memcached (see conftest.py); nothing here is mocked.
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile

os.environ["REGIONS_VAR_DIR"] = _var = tempfile.mkdtemp(prefix="regions-django-tests-")
atexit.register(shutil.rmtree, _var, True)
os.environ.pop("REGIONS_MEMCACHED", None)  # the fixtures start a real one; don't probe a stray address

from config.settings import *  # noqa: E402,F403

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
REGIONS_NOTICES: list[str] = []  # the import-time fallback notice is not about the test memcached
REGIONS_DASHBOARD_PUBLIC = False  # the example opens it in DEBUG; the tests check the real default
INSTALLED_APPS = [*INSTALLED_APPS, "tests.django.tagapp"]  # noqa: F405 - models of the tag tests
