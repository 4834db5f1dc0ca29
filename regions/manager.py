"""CacheManager: the regions of one configuration, and the process default used by ``@region``."""

from __future__ import annotations

import logging
import threading
import weakref
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any, ParamSpec, TypeVar

from . import config as _config
from . import fleet as _fleet
from . import trace as _trace
from .decorator import CachedFunction, decorate
from .errors import ConfigurationError, RegionError, UnknownRegion
from .region import DEFAULT, Region
from .region import identity as region_identity
from .signing import Signer
from .tags import tags_of

log = logging.getLogger("regions")

P = ParamSpec("P")
R = TypeVar("R")


class CacheManager:
    """The regions built from one settings dict.

    Managers are independent: two managers with the same region names never share settings
    (there is no process-wide region registry, unlike Beaker's ``cache_regions``).
    """

    #: A manager's regions never change; its decorators rebind only when :mod:`regions.trace` turns
    #: recording on or off (it bumps this class attribute for every manager at once).
    epoch = 0
    binds_late = False

    def __init__(
        self,
        config: Mapping[str, Any] | None,
        *,
        key_prefix: str = "",
        version: int = 1,
        secret: str | bytes | None = None,
        secret_fallbacks: Iterable[str | bytes] = (),
        publish_every: float | None = None,
    ) -> None:
        if not isinstance(key_prefix, str):
            raise _config.ConfigurationError(
                f"key_prefix must be a string, not {key_prefix!r}", option="key_prefix"
            )
        if isinstance(version, bool) or not isinstance(version, int):
            raise _config.ConfigurationError(f"version must be an integer, not {version!r}", option="version")
        if secret is not None and (not isinstance(secret, (str, bytes)) or len(secret) < 16):
            raise _config.ConfigurationError(
                "secret must be a string or bytes of at least 16 characters (a long random value, "
                "such as Django's SECRET_KEY); entries are signed with a key derived from it",
                option="secret",
            )
        self.key_prefix = key_prefix
        self.version = version
        signer = Signer(secret, secret_fallbacks)
        self._regions: dict[str, Region] = {}
        for name, settings in _config.normalize(config).items():
            prefix = ":".join(p for p in (key_prefix, settings["KEY_PREFIX"]) if p)
            identity = region_identity(prefix, name)
            store = settings["STORE"](
                name, settings["LOCATION"], settings["OPTIONS"], identity=identity, signer=signer
            )
            self._regions[name] = Region(
                name,
                store,
                timeout=settings["TIMEOUT"],
                key_prefix=prefix,
                version=settings["VERSION"] if settings["VERSION"] is not None else version,
                location=settings["LOCATION"],
            )

        stores = {name: r.store for name, r in self._regions.items()}
        for store in stores.values():
            store.link(stores)  # synced and tiered regions find the region they work through
        #: Publishes this process's figures for deployment_stats() (regions.fleet), off the hit path.
        self._fleet = _fleet.Fleet(self._regions.values(), _fleet.check_every(publish_every))

        unsigned = [name for name, r in self._regions.items() if r.store.signs and not signer.keyed]
        if unsigned:
            log.warning(
                "cache regions %s store entries outside this process without a secret: anyone who "
                "can write to their memcached server or folder can plant entries that this process "
                "will unpickle (run code); pass secret=... to CacheManager / regions.configure "
                "(the Django app uses SECRET_KEY)",
                ", ".join(map(repr, unsigned)),
            )

    def __getitem__(self, name: str) -> Region:
        try:
            region = self._regions[name]
        except KeyError:
            raise UnknownRegion(name, list(self._regions)) from None
        if self._fleet.idle:  # first lookup: start publishing this process's figures
            self._fleet.start()
        return region

    get_region = __getitem__

    def __contains__(self, name: object) -> bool:
        return name in self._regions

    def __iter__(self) -> Iterator[str]:
        return iter(self._regions)

    def __len__(self) -> int:
        return len(self._regions)

    def regions(self) -> list[Region]:
        return list(self._regions.values())

    def region(
        self,
        name: str,
        *,
        timeout: float | None = DEFAULT,
        key: Callable[..., Any] | None = None,
        tags: Callable[..., Iterable[Any]] | Iterable[Any] | None = None,
        invalidate_on: Iterable[Any] | None = None,
    ) -> Callable[[Callable[P, R]], CachedFunction[P, R]]:
        """Decorator caching a function in region ``name`` (checked now: unknown names raise).

        ``tags``: the tags of each entry (a callable taking the function's parameters, or a fixed
        list); ``invalidate_on``: objects whose tags every entry carries (:mod:`regions.tags`)."""
        self[name]
        return decorate(self, name, timeout, key, tags, invalidate_on)

    def invalidate_tags(self, *tags: Any) -> bool:
        """Make every entry carrying one of ``tags`` a miss, in every region of this manager and
        every process sharing their storage. ``False`` when some region's storage was not reached
        (a memcached region replays the bump before it reads from that server again)."""
        names = list(tags_of(tags, "invalidate_tags()"))
        failures: list[tuple[Region, Exception]] = []
        for region in self._regions.values():
            try:
                region.store.tags.bump(names)
            except Exception as exc:
                failures.append((region, exc))
        for region, failure in failures:  # every region had its bump first (raise_errors raises here)
            region.failed("invalidate_tags", failure)
        return not failures

    def deployment_stats(self, *, wait: bool = True) -> dict[str, dict[str, Any]]:
        """Per region, the figures of ``stats()`` summed over every process that shares its storage,
        with ``processes``, ``scope`` and ``error`` (:meth:`regions.fleet.Fleet.deployment_stats`).
        ``wait=False``: never touch the network here (what the background thread read last)."""
        return self._fleet.deployment_stats(wait=wait)

    def process_counts(self, region: Region) -> dict[str, Any]:
        """This process's own counters of ``region``: since the fork in a forked worker (what it
        inherited from its parent is the parent's), else all of them (:meth:`regions.fleet.Fleet.own`)."""
        return self._fleet.own(region)

    def close(self) -> None:
        self._fleet.close()
        for region in self._regions.values():
            region.close()

    def __repr__(self) -> str:
        return f"<CacheManager regions={list(self._regions)}>"


class _DefaultManager:
    """The process default set by :func:`configure`; ``epoch`` changes on each configure."""

    def __init__(self) -> None:
        self.manager: CacheManager | None = None
        self.epoch = 0
        self.lock = threading.Lock()
        #: Why there is no manager: the settings :func:`disable` was given, rejected.
        self.rejected: ConfigurationError | None = None
        #: Functions decorated with :func:`region`, by ``module.qualname`` (as long as they live).
        self.decorated: weakref.WeakValueDictionary[str, CachedFunction[Any, Any]] = (
            weakref.WeakValueDictionary()
        )

    binds_late = True  # the default's regions change with configure(): bind at call time

    def get_region(self, name: str) -> Region:
        return get_manager()[name]


_default = _DefaultManager()


def _rebind_all() -> None:
    """Every decorated function rebinds at its next call (:mod:`regions.trace` switched)."""
    with _default.lock:
        _default.epoch += 1
    CacheManager.epoch += 1  # a class attribute: every manager at once


_trace.on_switch(_rebind_all)


def configure(config: Mapping[str, Any] | None, **options: Any) -> CacheManager | None:
    """Build the default manager from ``config`` (``None`` removes it) and return it.

    ``options`` are :class:`CacheManager`'s (``key_prefix``, ``version``, ``secret``,
    ``secret_fallbacks``). Decorators made with
    :func:`region` use the new regions from their next call on.
    """
    manager = CacheManager(config, **options) if config is not None else None
    _replace(manager, None)
    return manager


def disable(error: ConfigurationError) -> None:
    """Remove the default manager because its settings were rejected with ``error``: every use of
    the default regions then raises a copy of ``error`` (which names the region, option and remedy)
    instead of "not configured". For a caller that cannot raise at start-up (the Django app: checks
    report the problems, but gunicorn and the shell do not run them)."""
    _replace(None, error)


def _replace(manager: CacheManager | None, rejected: ConfigurationError | None) -> None:
    with _default.lock:
        old, _default.manager = _default.manager, manager
        _default.rejected = rejected
        _default.epoch += 1
    if old is not None:
        old.close()


def epoch() -> int:
    """A number that changes each time :func:`configure` replaces the default manager (and when
    :mod:`regions.trace` turns recording on or off): a cached lookup of a region is then redone."""
    return _default.epoch


def get_manager() -> CacheManager:
    """The default manager; :class:`RegionError` when :func:`configure` has not run."""
    manager = _default.manager
    if manager is None:
        rejected = _default.rejected
        if rejected is not None:  # a copy: raising one instance again and again grows its traceback
            raise ConfigurationError(str(rejected), region=rejected.region, option=rejected.option)
        raise RegionError(
            "regions are not configured: call regions.configure({...}) at start-up, or add "
            "'django_regions' to INSTALLED_APPS with a CACHE_REGIONS setting"
        )
    return manager


def invalidate_tags(*tags: Any) -> bool:
    """:meth:`CacheManager.invalidate_tags` of the default manager."""
    return get_manager().invalidate_tags(*tags)


def region(
    name: str,
    *,
    timeout: float | None = DEFAULT,
    key: Callable[..., Any] | None = None,
    tags: Callable[..., Iterable[Any]] | Iterable[Any] | None = None,
    invalidate_on: Iterable[Any] | None = None,
) -> Callable[[Callable[P, R]], CachedFunction[P, R]]:
    """Decorator caching a function in region ``name`` of the default manager (``tags`` and
    ``invalidate_on``: see :meth:`CacheManager.region`).

    Usable before :func:`configure`: the region is looked up at the first call after each
    configure (settings may change, e.g. under Django's ``override_settings``), so an unknown name
    raises :class:`UnknownRegion` at that call. Each decorated function is recorded
    (:func:`decorated`): ``manage.py check`` reports those whose region is not configured
    (``django_regions.E021``), and a function decorated after :func:`configure` with a name it does
    not have is logged at once.
    """
    make = decorate(_default, name, timeout, key, tags, invalidate_on)

    def decorator(func: Callable[P, R]) -> CachedFunction[P, R]:
        cached = make(func)
        qualname = f"{func.__module__}.{func.__qualname__}"
        _default.decorated[qualname] = cached
        manager = _default.manager
        if manager is not None and name not in manager:
            log.warning("%s: %s", qualname, UnknownRegion(name, list(manager)))
        return cached

    return decorator


def decorated() -> dict[str, str]:
    """The functions decorated with :func:`region` that are still alive: ``module.qualname`` ->
    region name, recorded as they were decorated (whether or not :func:`configure` had run)."""
    return {qualname: func.region_name for qualname, func in list(_default.decorated.items())}
