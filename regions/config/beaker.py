"""A Beaker ``cache_opts`` dict (``cache.regions``, ``cache.<name>.type`` ...) as region settings."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..backends import BEAKER_ALIASES
from .problems import Problem

_BEAKER_IGNORED = {"lock_dir", "key_length", "enabled", "cookie_expires", "namespace_class"}


def is_beaker(config: Mapping[str, Any]) -> bool:
    return any(isinstance(k, str) and k.startswith("cache.") for k in config)


def from_beaker(opts: Mapping[str, Any]) -> tuple[dict[str, dict[str, Any]], list[Problem]]:
    """Translate a Beaker ``cache_opts`` dict into region settings."""
    problems: list[Problem] = []
    names = [n.strip() for n in str(opts.get("cache.regions", "")).split(",") if n.strip()]
    if not names:
        problems.append(
            Problem(
                "E001",
                None,
                "cache.regions",
                "the Beaker settings name no region in 'cache.regions'",
                "list them: 'cache.regions': 'functions, files'",
            )
        )
    regions: dict[str, dict[str, Any]] = {}
    for name in names:

        def opt(field: str, name: str = name) -> Any:
            return opts.get(f"cache.{name}.{field}", opts.get(f"cache.{field}"))

        btype = opt("type")
        backend = BEAKER_ALIASES.get(str(btype), btype)
        region: dict[str, Any] = {"BACKEND": backend}
        if backend in ("memcached", "redis"):  # Beaker's ext:redis url is a redis:// URL as ours
            region["LOCATION"] = opt("url")
        elif backend == "file":
            data_dir = opt("data_dir")
            region["LOCATION"] = str(Path(data_dir) / name) if data_dir else None
        expire = opt("expire")
        region["TIMEOUT"] = None if expire in (None, "") else _number(expire)
        for key in opts:
            field = key[len(f"cache.{name}.") :] if key.startswith(f"cache.{name}.") else None
            if field and field not in {"type", "url", "data_dir", "expire"} | _BEAKER_IGNORED:
                problems.append(
                    Problem(
                        "E001",
                        name,
                        key,
                        f"Beaker setting {key!r} is not supported",
                        "remove it, or move the region to CACHE_REGIONS form with OPTIONS",
                    )
                )
        regions[name] = region
    return regions, problems


def _number(value: Any) -> Any:
    try:
        return float(value) if "." in str(value) else int(value)
    except (TypeError, ValueError):
        return value  # reported by the TIMEOUT check
