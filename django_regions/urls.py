"""``path("regions/", include("django_regions.urls"))`` mounts the dashboard.

Every view here is staff-only unless the settings open it (see :mod:`django_regions.conf`).
"""

from django.urls import path

from django_regions.views import dashboard

app_name = "django_regions"
urlpatterns = [path("", dashboard, name="dashboard")]
