"""The checks of region settings, as a table: one small validator per option family.

:func:`regions.config.check` walks :data:`REGION_VALIDATORS` over each region in turn, then
:data:`CROSS_REGION_VALIDATORS` over the regions it accepted. The tables' order is the order the
problems are reported in. A validator that ``stops`` drops the region when it reports a problem:
the validators after it need what it checks (a known BACKEND, a usable LOCATION).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator, Mapping
from functools import cached_property
from pathlib import Path
from typing import Any, NamedTuple

from ..backends import BUILTIN, for_options, store_class, why_unknown
from ..backends.contract import COMMON_OPTIONS, Store
from ..backends.file.folders import unwritable
from ..backends.memcached.expiry import longest_timeout
from .problems import Problem

SETTINGS = ("BACKEND", "LOCATION", "TIMEOUT", "KEY_PREFIX", "VERSION", "OPTIONS")
DEFAULT_TIMEOUT = 300


class RegionSettings:
    """One region's settings as written, read with their defaults, and the regions accepted before it."""

    def __init__(
        self, name: str, settings: Mapping[str, Any], earlier: Mapping[str, Mapping[str, Any]]
    ) -> None:
        self.name = name
        self.settings = settings
        #: The regions accepted before this one, normalized, by name (:func:`shared_folder` reads them).
        self.earlier = earlier

    @cached_property
    def known_store(self) -> type[Store] | None:
        """The store class BACKEND names, or ``None`` (the :func:`backend` validator reports it)."""
        backend = self.settings.get("BACKEND")
        return store_class(backend) if isinstance(backend, str) else None

    @property
    def store(self) -> type[Store]:
        """The store class; the validators after :func:`backend` only see regions that have one."""
        if self.known_store is None:
            raise LookupError(f"region {self.name!r} has no known BACKEND")
        return self.known_store

    @cached_property
    def location(self) -> Any:
        """LOCATION as written, a path-like as its str."""
        location = self.settings.get("LOCATION")
        return os.fspath(location) if isinstance(location, os.PathLike) else location

    @cached_property
    def folder(self) -> str:
        """A file region's LOCATION made absolute."""
        return str(Path(str(self.location)).expanduser().absolute())

    @cached_property
    def timeout(self) -> Any:
        """TIMEOUT, :data:`DEFAULT_TIMEOUT` when unset (a request region's: ``None``)."""
        return self.settings.get("TIMEOUT", None if self.store.name == "request" else DEFAULT_TIMEOUT)

    @cached_property
    def key_prefix(self) -> Any:
        return self.settings.get("KEY_PREFIX", "")

    @cached_property
    def version(self) -> Any:
        return self.settings.get("VERSION", None)

    @cached_property
    def options(self) -> Any:
        return self.settings.get("OPTIONS", {}) or {}

    def normalized(self) -> dict[str, Any]:
        """The settings with defaults filled in (for a region no validator stopped at)."""
        cls, options = self.store, self.options
        return {
            "BACKEND": cls.name,
            "STORE": for_options(cls, options) if isinstance(options, Mapping) else cls,
            "LOCATION": self.folder if cls.name == "file" else self.location,
            "TIMEOUT": self.timeout,
            "KEY_PREFIX": self.key_prefix,
            "VERSION": self.version,
            "OPTIONS": dict(options) if isinstance(options, Mapping) else {},
        }


def setting_names(region: RegionSettings) -> Iterator[Problem]:
    """E001: a key that is not one of :data:`SETTINGS`."""
    name = region.name
    for key in region.settings:
        if key not in SETTINGS:
            yield Problem(
                "E001",
                name,
                str(key),
                f"region {name!r}: unknown setting {key!r}",
                f"region settings are {', '.join(SETTINGS)}; backend options go in OPTIONS",
            )


def backend(region: RegionSettings) -> Iterator[Problem]:
    """E002: BACKEND names no store."""
    if region.known_store is None:
        given = region.settings.get("BACKEND")
        what, remedy = why_unknown(given) if isinstance(given, str) else (
            f"unknown BACKEND {given!r}",
            f"use one of {', '.join(map(repr, BUILTIN))}, or 'package.module:NamespaceManagerClass'",
        )
        yield Problem("E002", region.name, "BACKEND", f"region {region.name!r}: {what}", remedy)


def location(region: RegionSettings) -> Iterator[Problem]:
    """E003: a backend that needs a LOCATION has none, or one it cannot use."""
    cls, given = region.store, region.location
    if not cls.needs_location:
        return
    message = "LOCATION is missing" if given in (None, "", []) else cls.check_location(given)
    if message:
        example = {"memcached": "'127.0.0.1:11211'", "redis": "'redis://127.0.0.1:6379/0'"}.get(
            cls.name, "BASE_DIR / 'var' / 'cache'")
        yield Problem(
            "E003",
            region.name,
            "LOCATION",
            f"region {region.name!r} ({cls.name}): {message}",
            f"set LOCATION, e.g. {example}",
        )


def no_location(region: RegionSettings) -> Iterator[Problem]:
    """E003: a LOCATION for a backend that takes none."""
    cls = region.store
    if not cls.needs_location and region.location not in (None, ""):
        yield Problem(
            "E003",
            region.name,
            "LOCATION",
            f"region {region.name!r}: BACKEND {cls.name!r} takes no LOCATION",
            "remove LOCATION",
        )


def shared_folder(region: RegionSettings) -> Iterator[Problem]:
    """E003: a file region's folder is, or is inside or around, the folder of an earlier file region."""
    if region.store.name != "file":
        return
    # By folder; a folder named by several regions is reported as its last one's.
    folders = {r["LOCATION"]: n for n, r in region.earlier.items() if r["BACKEND"] == "file"}
    folder = Path(region.folder)
    for other_path, other in folders.items():
        if folder.is_relative_to(other_path) or Path(other_path).is_relative_to(folder):
            yield Problem(
                "E003",
                region.name,
                "LOCATION",
                f"region {region.name!r}: LOCATION {str(region.location)!r} is, or is inside or around, "
                f"region {other!r}'s folder",
                "give each file region its own folder, side by side (clear() empties it)",
            )


def writable_folder(region: RegionSettings) -> Iterator[Problem]:
    """E007: a file region's folder cannot be created and written (tried for real: :func:`unwritable`)."""
    if region.store.name != "file":
        return
    why = unwritable(region.folder)
    if why is not None:
        yield Problem(
            "E007",
            region.name,
            "LOCATION",
            f"region {region.name!r}: LOCATION {region.folder!r} cannot be created or written ({why})",
            "point LOCATION at a folder this process can write, or fix its permissions",
        )


def timeout(region: RegionSettings) -> Iterator[Problem]:
    """E004: TIMEOUT is neither None nor a number of seconds >= 0."""
    value = region.timeout
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
        yield Problem(
            "E004",
            region.name,
            "TIMEOUT",
            f"region {region.name!r}: TIMEOUT={value!r} is not a number of seconds >= 0",
            "use seconds, e.g. 3600, or None to never expire",
        )


def key_prefix(region: RegionSettings) -> Iterator[Problem]:
    """E006: KEY_PREFIX is not a string."""
    prefix = region.key_prefix
    if not isinstance(prefix, str):
        yield Problem(
            "E006",
            region.name,
            "KEY_PREFIX",
            f"region {region.name!r}: KEY_PREFIX must be a string, not {prefix!r}",
            "use a short string such as 'myapp'",
        )


def version(region: RegionSettings) -> Iterator[Problem]:
    """E006: VERSION is neither None nor an integer."""
    value = region.version
    if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
        yield Problem(
            "E006",
            region.name,
            "VERSION",
            f"region {region.name!r}: VERSION must be an integer, not {value!r}",
            "use 1, then 2 to retire every entry",
        )


def options(region: RegionSettings) -> Iterator[Problem]:
    """E005: OPTIONS is not a dict, or holds a retired, unknown or ill-typed option of the backend."""
    name, cls, given = region.name, region.store, region.options
    if not isinstance(given, Mapping):
        yield Problem(
            "E005",
            name,
            "OPTIONS",
            f"region {name!r}: OPTIONS must be a dict",
            "write OPTIONS as {'name': value}",
        )
        return
    schema = {**COMMON_OPTIONS, **cls.options_schema}
    for option, value in given.items():
        retired = getattr(cls, "retired_options", {}).get(option)
        if retired is not None:
            yield Problem("E005", name, f"OPTIONS.{option}",
                          f"region {name!r}: option {option!r} is gone", retired)
            continue
        if option not in schema:
            known = ", ".join(sorted(schema))
            yield Problem(
                "E005",
                name,
                f"OPTIONS.{option}",
                f"region {name!r}: unknown option {option!r} for BACKEND {cls.name!r}",
                f"known options: {known}",
            )
            continue
        types, _default, doc = schema[option]
        ok = isinstance(value, types) and not (bool not in types and isinstance(value, bool))
        if ok and isinstance(value, (int, float)) and not isinstance(value, bool) and value < 0:
            ok = False
        if not ok:
            want = " or ".join(t.__name__ for t in types)
            yield Problem(
                "E005",
                name,
                f"OPTIONS.{option}",
                f"region {name!r}: option {option}={value!r} must be a {want} (>= 0)",
                f"{option}: {doc}",
            )


#: Options naming another region of the configuration, whose storage the region works through.
REFERENCES = {"sync_with": "keeps its invalidation log", "over": "is its shared tier"}


#: What the store of a region named by each option must implement (beyond :class:`Store`'s
#: defaults): a synced region keeps its log there; a tiered region derives its shared tier from it
#: and keeps the tier's log on that.
_NEEDS = {"sync_with": ("sync_storage",), "over": ("derive", "sync_storage")}


def _can_serve(settings: Mapping[str, Any], option: str) -> bool:
    """Whether the region of ``settings`` can be named by ``option``: its store implements what the
    option needs (memcached and file do; so may a third-party backend)."""
    store = settings.get("STORE")
    return store is not None and all(getattr(store, m) is not getattr(Store, m) for m in _NEEDS[option])


def references(regions: Mapping[str, Mapping[str, Any]]) -> Iterator[Problem]:
    """E008: ``sync_with`` / ``over`` must name a region of the same settings whose storage every
    process shares (memcached, file, or a backend that implements :data:`_NEEDS`)."""
    for name, settings in regions.items():
        for option, role in REFERENCES.items():
            if option not in settings["STORE"].options_schema:
                continue
            target = settings["OPTIONS"].get(option)
            if target is None:
                if settings["BACKEND"] == "tiered":
                    yield Problem(
                        "E008", name, f"OPTIONS.{option}",
                        f"region {name!r}: a tiered region needs OPTIONS {option!r}",
                        f"name the memcached, redis or file region that {role}, e.g. 'over': 'functions'",
                    )
                continue
            other = regions.get(target)
            if other is None or not _can_serve(other, option):
                what = "no region of these settings" if other is None else f"a {other['BACKEND']!r} region"
                shared = [n for n, r in regions.items() if _can_serve(r, option)]
                yield Problem(
                    "E008", name, f"OPTIONS.{option}",
                    f"region {name!r}: {option}={target!r} names {what}; the region it names {role} "
                    "and must be shared by every process",
                    "name a memcached, redis or file region" + (f": one of {', '.join(map(repr, shared))}"
                                                         if shared else " (add one)"),
                )


def push(regions: Mapping[str, Mapping[str, Any]]) -> Iterator[Problem]:
    """OPTIONS ``push``: E005 on a memory region without ``sync_with`` (nothing to push); W011 (a
    warning) when ``push: True`` is written for a region whose log cannot be pushed (only a redis
    region's can: memcached and files are polled every ``sync_interval``)."""
    for name, settings in regions.items():
        options = settings["OPTIONS"]
        if "push" not in options or "push" not in settings["STORE"].options_schema:
            continue
        link = "over" if settings["BACKEND"] == "tiered" else "sync_with"
        target = regions.get(options.get(link) or "")
        if link == "sync_with" and not options.get("sync_with"):
            yield Problem(
                "E005", name, "OPTIONS.push",
                f"region {name!r}: option 'push' applies only to a memory region with 'sync_with'",
                "remove 'push', or add 'sync_with' naming a redis region",
            )
        elif options["push"] is True and target is not None and not getattr(target["STORE"], "pushes", False):
            yield Problem(
                "W011", name, "OPTIONS.push",
                f"region {name!r}: push=True has no effect: {link}={options[link]!r} is a "
                f"{target['BACKEND']!r} region, which cannot push invalidations (they arrive within "
                "sync_interval)",
                f"name a redis region in {link!r} for push, or remove 'push' (lower sync_interval to "
                "see invalidations sooner)",
                level="warning",
            )


def memcached_expiry(regions: Mapping[str, Mapping[str, Any]]) -> Iterator[Problem]:
    """W010 (a warning): a memcached region, or a tiered region over one, whose TIMEOUT (plus
    ``stale``) ends after 2038-01-19 03:14:07 UTC, the latest expiry memcached takes. Its entries
    are stored to expire then (:meth:`MemcachedStore.expire_arg`), sooner than asked."""
    for name, settings in regions.items():
        holder = settings
        if settings["BACKEND"] == "tiered":
            holder = regions.get(settings["OPTIONS"].get("over"), {})  # stores with its stale
        if holder.get("BACKEND") != "memcached":
            continue
        value = settings["TIMEOUT"]
        if value is None or isinstance(value, bool) or not isinstance(value, (int, float)):
            continue
        stale = holder["OPTIONS"].get("stale", COMMON_OPTIONS["stale"][1])
        longest = longest_timeout(stale)
        if value > longest:
            yield Problem(
                "W010", name, "TIMEOUT",
                f"region {name!r}: TIMEOUT={value!r} (plus stale {stale:g} s) ends after 2038-01-19 "
                "03:14:07 UTC, the latest expiry memcached takes (a 32-bit Unix time): its entries "
                "expire then, sooner than TIMEOUT says",
                f"set TIMEOUT to at most {longest} s today, or to None to never expire",
                level="warning",
            )


def backend_settings(region: RegionSettings) -> Iterator[Problem]:
    """E005: what a backend's ``check_settings(location, options)`` finds wrong beyond the types
    (a Redis region: a list of servers without ``cluster``, Sentinel's form, TLS without rediss://)."""
    if not isinstance(region.options, Mapping):
        return
    for setting, message, remedy in region.store.check_settings(region.location, region.options):
        yield Problem("E005", region.name, setting,
                      f"region {region.name!r} ({region.store.name}): {message}", remedy)


class Validator(NamedTuple):
    """One entry of :data:`REGION_VALIDATORS`."""

    check: Callable[[RegionSettings], Iterable[Problem]]
    #: A problem it reports drops the region: the validators after it need what it checks.
    stops: bool = False


#: One region's validators, in the order their problems are reported.
REGION_VALIDATORS: tuple[Validator, ...] = (
    Validator(setting_names),
    Validator(backend, stops=True),
    Validator(location, stops=True),
    Validator(no_location),
    Validator(shared_folder),
    Validator(writable_folder),
    Validator(timeout),
    Validator(key_prefix),
    Validator(version),
    Validator(options),
    Validator(backend_settings),
)

#: Validators of the accepted regions taken together, run after every region's own.
CROSS_REGION_VALIDATORS: tuple[Callable[[Mapping[str, Mapping[str, Any]]], Iterable[Problem]], ...] = (
    references,
    push,
    memcached_expiry,
)
