"""The decorator: caches a function's results in a region, keyed by its bound arguments.

Two variants are written out: :func:`_sync_wrapper` and :func:`_async_wrapper`. Both build the key
and hand it to the region's compute-once :class:`~regions.engine.Engine` (one backend round trip
for a hit; locks, stale serving and waiting on a miss). The sync wrapper reads in line so that a
hit costs no extra call.
"""

from __future__ import annotations

import functools
import inspect
import time
from collections.abc import Callable, Hashable
from typing import TYPE_CHECKING, Any, Generic, ParamSpec, Protocol, TypeVar, overload

from . import tagged
from . import trace as _trace
from .binding import KeyBuilder, _BindError
from .engine.flights import FLIGHTS
from .errors import ConfigurationError
from .keys import ATOMIC_TYPES
from .region import DEFAULT, Region
from .tags import TagSpec

if TYPE_CHECKING:
    from .backends.contract import Backend

P = ParamSpec("P")
R = TypeVar("R")


class CachedFunction(Protocol[P, R]):
    """What a decorated function offers besides being called with its own signature."""

    uncached: Callable[P, R]
    region_name: str
    __name__: str
    __wrapped__: Callable[P, R]

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R: ...
    @overload
    def __get__(self, obj: None, objtype: type | None = None) -> CachedFunction[P, R]: ...
    @overload
    def __get__(self, obj: object, objtype: type | None = None) -> Callable[..., R]: ...
    def invalidate(self, *args: P.args, **kwargs: P.kwargs) -> Any: ...
    def refresh(self, *args: P.args, **kwargs: P.kwargs) -> Any: ...
    def cache_key(self, *args: P.args, **kwargs: P.kwargs) -> Hashable | None: ...
    def invalidate_all(self) -> Any: ...


class Source(Protocol):
    """Where a decorator finds its region: a manager, or the process default (which can change)."""

    epoch: int
    binds_late: bool

    def get_region(self, name: str) -> Region: ...


class Binding(Generic[P, R]):
    """The resolved region of one decorated function, rebound when its source's epoch changes."""

    __slots__ = (
        "source",
        "name",
        "qualname",
        "timeout",
        "builder",
        "epoch",
        "region",
        "ns",
        "make_key",
        "ttl",
        "fast_epoch",
        "get_entry",
        "stats",
    )

    def __init__(self, source: Source, name: str, qualname: str, timeout: Any, builder: KeyBuilder) -> None:
        self.source, self.name, self.qualname = source, name, qualname
        self.timeout, self.builder = timeout, builder
        self.epoch = self.fast_epoch = -1

    def current(self) -> Binding[P, R]:
        if self.epoch != self.source.epoch:
            epoch = self.source.epoch
            region = self.source.get_region(self.name)
            self.region = region
            self.ns: Backend = region.namespace(self.qualname)
            self.make_key = self.builder.native if region.store.native_keys else self.builder.text
            self.ttl = region.ttl(self.timeout)
            self.get_entry = self.ns.get_entry
            self.stats = region.stats_
            # the decorator's inline fast path is for in-process stores only, and off while tracing
            self.fast_epoch = epoch if region.store.native_keys and not _trace.ON else -1
            self.epoch = epoch
        return self

    def key(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Hashable:
        return self.make_key(args, kwargs)


def check_timeout(where: str, timeout: Any) -> None:
    if timeout is DEFAULT or timeout is None:
        return
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or timeout < 0:
        raise ConfigurationError(
            f"{where}: timeout={timeout!r} is not a number of seconds >= 0; "
            "use a number, or None to never expire",
            option="timeout",
        )


def decorate(
    source: Source,
    name: str,
    timeout: Any,
    key: Callable[..., Any] | None,
    tags: Any = None,
    invalidate_on: Any = None,
) -> Callable[[Callable[P, R]], CachedFunction[P, R]]:
    """Build the decorator for region ``name`` of ``source`` (``tags``: :mod:`regions.tags`)."""
    if key is not None and not callable(key):
        raise ConfigurationError(
            f"region {name!r}: key={key!r} is not callable; pass a function taking the decorated "
            "function's parameters and returning the key parts",
            region=name,
            option="key",
        )

    def decorator(func: Callable[P, R]) -> CachedFunction[P, R]:
        qualname = f"{func.__module__}.{func.__qualname__}"
        check_timeout(qualname, timeout)
        binding: Binding[P, R] = Binding(source, name, qualname, timeout, KeyBuilder(func, qualname, key))
        if not source.binds_late:
            binding.current()  # a manager's regions are fixed: unknown names fail at decoration time
        is_async = inspect.iscoroutinefunction(func)
        wrapper = (_async_wrapper if is_async else _sync_wrapper)(func, binding)
        if tags is not None or invalidate_on is not None:
            spec = TagSpec(qualname, tags, invalidate_on)  # fixed tags are checked now
            wrapper = tagged.wrap(func, binding, wrapper, spec, is_async)
        wrapper.uncached = func  # type: ignore[attr-defined]
        wrapper.region_name = name  # type: ignore[attr-defined]
        return wrapper  # type: ignore[return-value]

    return decorator


def _sync_wrapper(func: Callable[..., Any], binding: Binding[Any, Any]) -> Callable[..., Any]:
    now = time.time
    source = binding.source
    builder = binding.builder
    size = builder.binder.size if builder.custom is None else -1
    atomic = ATOMIC_TYPES

    def general(args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        b = binding if binding.epoch == source.epoch else binding.current()
        try:
            key = b.make_key(args, kwargs)
        except _BindError:
            return func(*args, **kwargs)  # the call does not fit the signature: let Python say why
        region = b.region
        if _trace.ON:
            return _trace.traced(b, b.ns, key, functools.partial(func, *args, **kwargs))
        seq = FLIGHTS.completed
        entry, fresh = region.read(b.ns, key)
        if fresh:
            return entry[2]  # type: ignore[index]
        return region.engine.fill(b.ns, key, entry, seq, functools.partial(func, *args, **kwargs), b.ttl)

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        # Fast path for in-process stores: all positional, every argument of an exact-equality type.
        # The key is then args itself, the same key KeyBuilder.native builds for these arguments.
        if kwargs or len(args) != size or binding.fast_epoch != source.epoch:
            return general(args, kwargs)
        for arg in args:
            if type(arg) not in atomic:
                return general(args, kwargs)
        try:
            entry = binding.get_entry(args)
        except Exception:
            return general(args, kwargs)
        if entry is not None:
            ttl = entry[1]
            if ttl is None or entry[0] + ttl > now():
                binding.stats.hits += 1
                return entry[2]
        return general(args, kwargs)

    def _key(args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[Binding[Any, Any], Hashable]:
        b = binding.current()
        try:
            return b, b.make_key(args, kwargs)
        except _BindError:
            func(*args, **kwargs)  # raises the TypeError for a call that does not fit
            raise

    def invalidate(*args: Any, **kwargs: Any) -> bool:
        """Forget the entry for these arguments; ``False`` when the backend was not reached."""
        b, key = _key(args, kwargs)
        return b.region.remove(b.ns, key)

    def refresh(*args: Any, **kwargs: Any) -> Any:
        """Call the function now, store its result for these arguments and return it.

        When the store fails, the old entry is invalidated instead (never served again)."""
        b, key = _key(args, kwargs)
        value = func(*args, **kwargs)
        if b.region.active:
            b.region.store_entry(b.ns, key, value, b.ttl, replacing=True)
        return value

    def cache_key(*args: Any, **kwargs: Any) -> Hashable | None:
        """The key for these arguments, exactly as the backend sees it (``None`` while the
        backend cannot be asked for the generation counters that are part of it)."""
        b, key = _key(args, kwargs)
        try:
            return b.ns.wire_key(key)
        except Exception as exc:
            b.region.failed("cache_key", exc)
            return None

    def invalidate_all() -> bool:
        """Forget every entry of this function in its region; ``False`` when the backend was not
        reached (a memcached region retries it before serving reads from that server again)."""
        b = binding.current()
        b.region.invalidations += 1
        try:
            b.ns.do_remove()
            return True
        except Exception as exc:
            b.region.failed("invalidate_all", exc)
            return False

    wrapper.invalidate = invalidate  # type: ignore[attr-defined]
    wrapper.refresh = refresh  # type: ignore[attr-defined]
    wrapper.cache_key = cache_key  # type: ignore[attr-defined]
    wrapper.invalidate_all = invalidate_all  # type: ignore[attr-defined]
    return wrapper


def _async_wrapper(func: Callable[..., Any], binding: Binding[Any, Any]) -> Callable[..., Any]:
    sync = _sync_wrapper(func, binding)  # reused for cache_key; its call path is never used

    @functools.wraps(func)
    async def wrapper(*args: Any, **kwargs: Any) -> Any:
        b = binding if binding.epoch == binding.source.epoch else binding.current()
        try:
            key = b.make_key(args, kwargs)
        except _BindError:
            return await func(*args, **kwargs)
        if _trace.ON:
            return await _trace.atraced(b, b.ns, key, functools.partial(func, *args, **kwargs))
        return await b.region.engine.aget_or_create(
            b.ns, key, functools.partial(func, *args, **kwargs), b.ttl
        )

    async def invalidate(*args: Any, **kwargs: Any) -> bool:
        """Forget the entry for these arguments; ``False`` when the backend was not reached."""
        b = binding.current()
        return await b.region.engine.call_io(sync.invalidate, *args, **kwargs)  # type: ignore[attr-defined]

    async def refresh(*args: Any, **kwargs: Any) -> Any:
        """Await the function now, store its result for these arguments and return it."""
        b = binding.current()
        try:
            key = b.make_key(args, kwargs)
        except _BindError:
            return await func(*args, **kwargs)
        value = await func(*args, **kwargs)
        if b.region.active:
            store = functools.partial(b.region.store_entry, replacing=True)
            await b.region.engine.call_io(store, b.ns, key, value, b.ttl)
        return value

    async def invalidate_all() -> bool:
        """Forget every entry of this function in its region; ``False`` when the backend was not reached."""
        b = binding.current()
        return await b.region.engine.call_io(sync.invalidate_all)  # type: ignore[attr-defined]

    wrapper.invalidate = invalidate  # type: ignore[attr-defined]
    wrapper.refresh = refresh  # type: ignore[attr-defined]
    wrapper.cache_key = sync.cache_key  # type: ignore[attr-defined]
    wrapper.invalidate_all = invalidate_all  # type: ignore[attr-defined]
    return wrapper
