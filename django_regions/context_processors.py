"""``django_regions.context_processors.notices`` puts REGIONS_NOTICES into every template as ``notices``."""

from __future__ import annotations

from django.http import HttpRequest

from django_regions import conf


def notices(request: HttpRequest) -> dict[str, list[str]]:
    """Operator notices (e.g. "memcached not answering, using memory") for the page banner."""
    return {"notices": conf.get_notices()}
