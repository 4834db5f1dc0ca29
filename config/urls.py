"""URLs: the example shop at /, the regions dashboard at /regions/, Prometheus metrics at /metrics
(501 without prometheus_client: pip install -e '.[prometheus]')."""

from django.urls import include, path

from django_regions.metrics import metrics_view

urlpatterns = [
    path("regions/", include("django_regions.urls")),
    path("metrics", metrics_view, name="metrics"),
    path("", include("config.shop.urls")),
]
