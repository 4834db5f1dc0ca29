"""``gunicorn --preload`` entry point of tests/django/test_django_fleet.py: the example project (the
master warms the memcached region up before forking, as in preload_wsgi), with deployment figures
published every ``REGIONS_TEST_PUBLISH_EVERY`` seconds instead of every 5 (regions/fleet.py).
"""

from __future__ import annotations

import os

from regions import fleet

fleet.PUBLISH_EVERY = float(os.environ["REGIONS_TEST_PUBLISH_EVERY"])  # before Django builds the regions

from tests.django.preload_wsgi import application  # noqa: E402

__all__ = ["application"]
