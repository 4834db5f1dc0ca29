"""The example project: settings, URLs, WSGI/ASGI entry points and the ``shop`` demo app."""
