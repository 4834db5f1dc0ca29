"""URLs: the example shop at /, the regions dashboard at /regions/, Prometheus metrics at /metrics
(501 without prometheus_client: pip install -e '.[prometheus]')."""

from django.conf import settings
from django.urls import include, path

from django_regions.metrics import metrics_view

urlpatterns = [
    path("regions/", include("django_regions.urls")),
    path("metrics", metrics_view, name="metrics"),
    path("", include("config.shop.urls")),
]
if "debug_toolbar" in settings.INSTALLED_APPS:  # DEBUG with django-debug-toolbar installed (settings.py)
    urlpatterns.insert(0, path("__debug__/", include("debug_toolbar.urls")))
