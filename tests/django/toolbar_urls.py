"""The example's URLs with the debug toolbar's, for tests that install the toolbar: the example adds
them only when the toolbar is on at import time, and an earlier test may have imported it without."""

from django.urls import include, path

from config.urls import urlpatterns as example

urlpatterns = [path("__debug__/", include("debug_toolbar.urls")), *example]
