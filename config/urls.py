"""URLs: the example shop at /, the regions dashboard at /regions/."""

from django.urls import include, path

urlpatterns = [
    path("regions/", include("django_regions.urls")),
    path("", include("config.shop.urls")),
]
