"""URLs of the test-only views, mounted beside the example project's."""

from django.urls import include, path

from tests.django import views

urlpatterns = [
    path("t/fill/", views.fill),
    path("t/afill/", views.afill),
    path("t/boom/", views.boom),
    path("t/aboom/", views.aboom),
    path("t/stream/", views.stream),
    path("t/astream/", views.astream),
    path("t/astream-sync/", views.astream_sync),
    path("t/no-request-region/", views.no_request_region),
    path("", include("config.urls")),
]
