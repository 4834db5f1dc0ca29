"""Cache-key encoders for Django objects, registered with :func:`regions.keys.register`."""

from __future__ import annotations

from django.db import models
from django.http import HttpRequest

from regions import UncacheableArgument


def model_key(obj: models.Model) -> tuple[str, str | None, object]:
    """A saved model instance is keyed by (app label, model name, pk)."""
    opts = obj._meta
    if obj.pk is None:
        raise UncacheableArgument(
            f"unsaved {opts.label} instance has no primary key to cache by; "
            f"save it first or pass its pk (a field value) instead"
        )
    return (opts.app_label, opts.model_name, obj.pk)


def request_key(request: HttpRequest) -> tuple[object, ...]:
    """Requests are never cache keys: they differ on every call and carry per-user data."""
    raise UncacheableArgument(
        f"{type(request).__name__} cannot be part of a cache key (every request is different); "
        "pass request.user.pk or the values you need from the request instead"
    )


def register() -> None:
    """Register both encoders (idempotent: registering again replaces the previous encoder)."""
    from regions import keys

    keys.register(models.Model, model_key)
    keys.register(HttpRequest, request_key)
