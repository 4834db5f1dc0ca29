"""Django integration for regions: settings, middleware, checks and ``manage.py regions``.

Add ``"django_regions"`` to ``INSTALLED_APPS`` and describe the regions in ``CACHE_REGIONS``
(same shape as ``CACHES``, which this app never changes; its E020 check reads it to find
:class:`django_regions.cache.RegionCache` aliases). Importing this package does not touch Django
settings, so ``config/settings.py`` may import :mod:`django_regions.fallback`.
"""

from __future__ import annotations
