"""Region settings: validation (every problem, with a remedy) and normalisation.

Settings are shaped like Django's ``CACHES``::

    {"functions": {"BACKEND": "memcached", "LOCATION": "127.0.0.1:11211", "TIMEOUT": 3600,
                   "KEY_PREFIX": "", "VERSION": 1, "OPTIONS": {}}}

A Beaker ``cache_opts`` dict (``cache.regions``, ``cache.<name>.type`` ...) is translated first.
:func:`check` lists every problem (the Django app turns them into system checks);
:func:`normalize` raises :class:`ConfigurationError` on the first. The checks themselves are the
tables of :mod:`regions.config.validators`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..errors import ConfigurationError
from .beaker import from_beaker, is_beaker
from .problems import Problem
from .validators import CROSS_REGION_VALIDATORS, DEFAULT_TIMEOUT, REGION_VALIDATORS, SETTINGS, RegionSettings

__all__ = ["DEFAULT_TIMEOUT", "SETTINGS", "ConfigurationError", "Problem", "check", "normalize"]


def check(config: Any) -> list[Problem]:
    """Every problem in ``config``, warnings included; an empty list means it is used as written.
    It is usable when none is an error (:attr:`Problem.is_error`)."""
    return _validate(config)[1]


def normalize(config: Any) -> dict[str, dict[str, Any]]:
    """Settings with defaults filled in; raises :class:`ConfigurationError` for the first error
    (warnings are left to :func:`check`)."""
    regions, found = _validate(config)
    problems = [p for p in found if p.is_error]
    if problems:
        p = problems[0]
        more = f" (and {len(problems) - 1} more problem(s))" if len(problems) > 1 else ""
        raise ConfigurationError(f"{p.message}; {p.hint}{more}", region=p.region, option=p.option)
    return regions


def _validate(config: Any) -> tuple[dict[str, dict[str, Any]], list[Problem]]:
    """The regions no validator stopped at, normalized, and every problem, in the validators' order."""
    problems: list[Problem] = []
    if config is None:
        config = {}
    if not isinstance(config, Mapping):
        return {}, [
            Problem(
                "E001",
                None,
                None,
                f"region settings must be a dict of regions, not {type(config).__name__}",
                "write {'name': {'BACKEND': ..., ...}}",
            )
        ]
    if is_beaker(config):
        config, problems = from_beaker(config)
    regions: dict[str, dict[str, Any]] = {}
    for name, settings in config.items():
        if malformed := _malformed(name, settings):
            problems.append(malformed)
            continue
        region = RegionSettings(name, settings, earlier=regions)
        for validator in REGION_VALIDATORS:
            found = list(validator.check(region))
            problems.extend(found)
            if found and validator.stops:
                break
        else:
            regions[name] = region.normalized()
    for cross_check in CROSS_REGION_VALIDATORS:
        problems.extend(cross_check(regions))
    return regions, problems


def _malformed(name: Any, settings: Any) -> Problem | None:
    """E001: a region that is not a name and a dict of settings."""
    if not isinstance(name, str) or not name:
        return Problem(
            "E001",
            str(name),
            None,
            f"region name {name!r} is not a non-empty string",
            "name regions with strings, e.g. 'functions'",
        )
    if not isinstance(settings, Mapping):
        return Problem(
            "E001",
            name,
            None,
            f"region {name!r}: settings must be a dict",
            "write {'BACKEND': 'memcached', 'LOCATION': ..., 'TIMEOUT': ...}",
        )
    return None
