"""Settings-time helper: a memcached region when memcached answers, an in-process one when not.

Safe to import from ``settings.py`` (imports neither Django settings nor the app).
"""

from __future__ import annotations

from typing import Any

from django_regions.health import unreachable


def memcached_or_memory(
    location: str | None,
    *,
    timeout: float | None = 300,
    memory_options: dict[str, Any] | None = None,
    probe_timeout: float = 1.0,
    **region: Any,
) -> tuple[dict[str, Any], str | None]:
    """Region settings for ``location``, plus a notice when it fell back to ``BACKEND: memory``.

    ``location`` empty/None or not answering gives a bounded in-process region (the same TIMEOUT
    and extra keys) and a human-readable notice to put in ``REGIONS_NOTICES``.
    """
    if location:
        down = unreachable(location, probe_timeout)
        if not down:
            return {"BACKEND": "memcached", "LOCATION": location, "TIMEOUT": timeout, **region}, None
        reason = f"memcached at {', '.join(down)} is not answering"
    else:
        reason = "no memcached address is configured (set REGIONS_MEMCACHED=host:port)"
    options = {"max_entries": 10_000, **(memory_options or {})}
    notice = f"{reason}; using an in-process memory region instead (not shared between processes)"
    return {"BACKEND": "memory", "TIMEOUT": timeout, "OPTIONS": options, **region}, notice
