"""Django integration for regions: settings, middleware, checks and ``manage.py regions``.

Add ``"django_regions"`` to ``INSTALLED_APPS`` and describe the regions in ``CACHE_REGIONS``
(same shape as ``CACHES``, which this app never reads or changes). Importing this package does
not touch Django settings, so ``config/settings.py`` may import :mod:`django_regions.fallback`.
"""

from __future__ import annotations
