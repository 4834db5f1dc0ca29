"""``path("regions/", include("django_regions.urls"))`` mounts the dashboard."""

from django.urls import path

from django_regions.views import dashboard

app_name = "django_regions"
urlpatterns = [path("", dashboard, name="dashboard")]
