"""Region settings: validation (every problem, with a remedy) and normalisation.

Settings are shaped like Django's ``CACHES``::

    {"functions": {"BACKEND": "memcached", "LOCATION": "127.0.0.1:11211", "TIMEOUT": 3600,
                   "KEY_PREFIX": "", "VERSION": 1, "OPTIONS": {}}}

A Beaker ``cache_opts`` dict (``cache.regions``, ``cache.<name>.type`` ...) is translated first.
:func:`check` lists every problem (the Django app turns them into system checks);
:func:`normalize` raises :class:`ConfigurationError` on the first.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..backends import BUILTIN, store_class
from ..backends.contract import COMMON_OPTIONS, Store
from ..backends.file.folders import unwritable
from ..errors import ConfigurationError
from .beaker import from_beaker, is_beaker
from .problems import Problem

SETTINGS = ("BACKEND", "LOCATION", "TIMEOUT", "KEY_PREFIX", "VERSION", "OPTIONS")
DEFAULT_TIMEOUT = 300


def _check_timeout(name: str, timeout: Any) -> Problem | None:
    if timeout is None:
        return None
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or timeout < 0:
        return Problem(
            "E004",
            name,
            "TIMEOUT",
            f"region {name!r}: TIMEOUT={timeout!r} is not a number of seconds >= 0",
            "use seconds, e.g. 3600, or None to never expire",
        )
    return None


def _check_options(name: str, cls: type[Store], options: Any) -> list[Problem]:
    if not isinstance(options, Mapping):
        return [
            Problem(
                "E005",
                name,
                "OPTIONS",
                f"region {name!r}: OPTIONS must be a dict",
                "write OPTIONS as {'name': value}",
            )
        ]
    schema = {**COMMON_OPTIONS, **cls.options_schema}
    problems = []
    for option, value in options.items():
        retired = getattr(cls, "retired_options", {}).get(option)
        if retired is not None:
            problems.append(
                Problem("E005", name, f"OPTIONS.{option}",
                        f"region {name!r}: option {option!r} is gone", retired)
            )
            continue
        if option not in schema:
            known = ", ".join(sorted(schema))
            problems.append(
                Problem(
                    "E005",
                    name,
                    f"OPTIONS.{option}",
                    f"region {name!r}: unknown option {option!r} for BACKEND {cls.name!r}",
                    f"known options: {known}",
                )
            )
            continue
        types, _default, doc = schema[option]
        ok = isinstance(value, types) and not (bool not in types and isinstance(value, bool))
        if ok and isinstance(value, (int, float)) and not isinstance(value, bool) and value < 0:
            ok = False
        if not ok:
            want = " or ".join(t.__name__ for t in types)
            problems.append(
                Problem(
                    "E005",
                    name,
                    f"OPTIONS.{option}",
                    f"region {name!r}: option {option}={value!r} must be a {want} (>= 0)",
                    f"{option}: {doc}",
                )
            )
    return problems


def _check_file_location(name: str, location: Any) -> Problem | None:
    """E007 unless ``location`` can be created and written (tried for real: :func:`unwritable`)."""
    why = unwritable(location)
    if why is None:
        return None
    return Problem(
        "E007",
        name,
        "LOCATION",
        f"region {name!r}: LOCATION {str(location)!r} cannot be created or written ({why})",
        "point LOCATION at a folder this process can write, or fix its permissions",
    )


def check(config: Any) -> list[Problem]:
    """Every problem in ``config``; an empty list means it is usable."""
    return _validate(config)[1]


def normalize(config: Any) -> dict[str, dict[str, Any]]:
    """Settings with defaults filled in; raises :class:`ConfigurationError` for the first problem."""
    regions, problems = _validate(config)
    if problems:
        p = problems[0]
        more = f" (and {len(problems) - 1} more problem(s))" if len(problems) > 1 else ""
        raise ConfigurationError(f"{p.message}; {p.hint}{more}", region=p.region, option=p.option)
    return regions


def _validate(config: Any) -> tuple[dict[str, dict[str, Any]], list[Problem]]:
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
    file_locations: dict[str, str] = {}
    for name, settings in config.items():
        if not isinstance(name, str) or not name:
            problems.append(
                Problem(
                    "E001",
                    str(name),
                    None,
                    f"region name {name!r} is not a non-empty string",
                    "name regions with strings, e.g. 'functions'",
                )
            )
            continue
        if not isinstance(settings, Mapping):
            problems.append(
                Problem(
                    "E001",
                    name,
                    None,
                    f"region {name!r}: settings must be a dict",
                    "write {'BACKEND': 'memcached', 'LOCATION': ..., 'TIMEOUT': ...}",
                )
            )
            continue
        unknown = [k for k in settings if k not in SETTINGS]
        for key in unknown:
            problems.append(
                Problem(
                    "E001",
                    name,
                    str(key),
                    f"region {name!r}: unknown setting {key!r}",
                    f"region settings are {', '.join(SETTINGS)}; backend options go in OPTIONS",
                )
            )
        backend = settings.get("BACKEND")
        cls = store_class(backend) if isinstance(backend, str) else None
        if cls is None:
            problems.append(
                Problem(
                    "E002",
                    name,
                    "BACKEND",
                    f"region {name!r}: unknown BACKEND {backend!r}",
                    f"use one of {', '.join(map(repr, BUILTIN))}, or 'package.module:NamespaceManagerClass'",
                )
            )
            continue
        location = settings.get("LOCATION")
        if isinstance(location, os.PathLike):
            location = os.fspath(location)
        if cls.needs_location:
            message = "LOCATION is missing" if location in (None, "", []) else cls.check_location(location)
            if message:
                example = "'127.0.0.1:11211'" if cls.name == "memcached" else "BASE_DIR / 'var' / 'cache'"
                problems.append(
                    Problem(
                        "E003",
                        name,
                        "LOCATION",
                        f"region {name!r} ({cls.name}): {message}",
                        f"set LOCATION, e.g. {example}",
                    )
                )
                continue
        elif location not in (None, ""):
            problems.append(
                Problem(
                    "E003",
                    name,
                    "LOCATION",
                    f"region {name!r}: BACKEND {cls.name!r} takes no LOCATION",
                    "remove LOCATION",
                )
            )
        if cls.name == "file":
            resolved = str(Path(str(location)).expanduser().absolute())
            for other_path, other in file_locations.items():
                if Path(resolved).is_relative_to(other_path) or Path(other_path).is_relative_to(resolved):
                    problems.append(
                        Problem(
                            "E003",
                            name,
                            "LOCATION",
                            f"region {name!r}: LOCATION {str(location)!r} is, or is inside or around, "
                            f"region {other!r}'s folder",
                            "give each file region its own folder, side by side (clear() empties it)",
                        )
                    )
            file_locations[resolved] = name
            location = resolved
            bad = _check_file_location(name, location)
            if bad:
                problems.append(bad)
        timeout = settings.get("TIMEOUT", None if cls.name == "request" else DEFAULT_TIMEOUT)
        if bad_timeout := _check_timeout(name, timeout):
            problems.append(bad_timeout)
        prefix = settings.get("KEY_PREFIX", "")
        if not isinstance(prefix, str):
            problems.append(
                Problem(
                    "E006",
                    name,
                    "KEY_PREFIX",
                    f"region {name!r}: KEY_PREFIX must be a string, not {prefix!r}",
                    "use a short string such as 'myapp'",
                )
            )
        version = settings.get("VERSION", None)
        if version is not None and (isinstance(version, bool) or not isinstance(version, int)):
            problems.append(
                Problem(
                    "E006",
                    name,
                    "VERSION",
                    f"region {name!r}: VERSION must be an integer, not {version!r}",
                    "use 1, then 2 to retire every entry",
                )
            )
        options = settings.get("OPTIONS", {}) or {}
        problems.extend(_check_options(name, cls, options))
        regions[name] = {
            "BACKEND": cls.name,
            "STORE": cls.for_options(options) if isinstance(options, Mapping) else cls,
            "LOCATION": location,
            "TIMEOUT": timeout,
            "KEY_PREFIX": prefix,
            "VERSION": version,
            "OPTIONS": dict(options) if isinstance(options, Mapping) else {},
        }
    problems.extend(_check_references(regions))
    return regions, problems


#: Options naming another region of the configuration, whose storage the region works through.
_REFERENCES = {"sync_with": "keeps its invalidation log", "over": "is its shared tier"}


def _check_references(regions: Mapping[str, Mapping[str, Any]]) -> list[Problem]:
    """E008: ``sync_with`` / ``over`` must name a memcached or file region of the same settings."""
    problems = []
    for name, settings in regions.items():
        for option, role in _REFERENCES.items():
            if option not in settings["STORE"].options_schema:
                continue
            target = settings["OPTIONS"].get(option)
            if target is None:
                if settings["BACKEND"] == "tiered":
                    problems.append(Problem(
                        "E008", name, f"OPTIONS.{option}",
                        f"region {name!r}: a tiered region needs OPTIONS {option!r}",
                        f"name the memcached or file region that {role}, e.g. 'over': 'functions'",
                    ))
                continue
            other = regions.get(target)
            if other is None or other["BACKEND"] not in ("memcached", "file"):
                what = "no region of these settings" if other is None else f"a {other['BACKEND']!r} region"
                shared = [n for n, r in regions.items() if r["BACKEND"] in ("memcached", "file")]
                problems.append(Problem(
                    "E008", name, f"OPTIONS.{option}",
                    f"region {name!r}: {option}={target!r} names {what}; the region it names {role} "
                    "and must be shared by every process",
                    "name a memcached or file region" + (f": one of {', '.join(map(repr, shared))}"
                                                         if shared else " (add one)"),
                ))
    return problems
