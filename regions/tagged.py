"""The call path of decorated functions that have tags (:mod:`regions.tags`).

The plain wrapper (:mod:`regions.decorator`) gives ``invalidate``, ``cache_key`` and
``invalidate_all``; a tagged call computes its tags, then reads and stores through a
:class:`~regions.tags.TaggedView` of the function's namespace manager. The engine is the same.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from . import trace as _trace
from .binding import _BindError
from .engine.flights import FLIGHTS
from .tags import TagSpec, uncached
from .tags.view import TaggedView

if TYPE_CHECKING:
    from .decorator import Binding


def wrap(
    func: Callable[..., Any],
    binding: Binding[Any, Any],
    plain: Callable[..., Any],
    spec: TagSpec,
    is_async: bool,
) -> Callable[..., Any]:
    """The tagged twin of ``plain`` (the wrapper :mod:`regions.decorator` made for ``func``)."""
    make = _async if is_async else _sync
    wrapper = make(func, binding, spec)
    for name in ("invalidate", "cache_key", "invalidate_all"):
        setattr(wrapper, name, getattr(plain, name))
    wrapper.tags = spec  # type: ignore[attr-defined]
    return wrapper


def _sync(func: Callable[..., Any], binding: Binding[Any, Any], spec: TagSpec) -> Callable[..., Any]:
    source = binding.source

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        b = binding if binding.epoch == source.epoch else binding.current()
        try:
            key = b.make_key(args, kwargs)
        except _BindError:
            return func(*args, **kwargs)  # the call does not fit the signature: let Python say why
        names = spec.names(args, kwargs)
        if uncached(names):
            return func(*args, **kwargs)
        region = b.region
        view = TaggedView(b.ns, names)
        if _trace.ON:
            return _trace.traced(b, view, key, functools.partial(func, *args, **kwargs))  # type: ignore[arg-type]
        seq = FLIGHTS.completed
        entry, fresh = region.read(view, key)  # type: ignore[arg-type]
        if fresh:
            return entry[2]  # type: ignore[index]
        call = functools.partial(func, *args, **kwargs)
        return region.engine.fill(view, key, entry, seq, call, b.ttl)  # type: ignore[arg-type]

    def refresh(*args: Any, **kwargs: Any) -> Any:
        """Call the function now, store its result (with its tags' current versions) and return it.

        When the versions cannot be read or the store fails, the old entry is removed instead."""
        b = binding.current()
        key = _key(func, b, args, kwargs)
        names = spec.names(args, kwargs)
        region = b.region
        view = _prepared(b, names, key) if region.active and not uncached(names) else None
        value = func(*args, **kwargs)
        if view is not None and view.versions is not None:
            region.store_entry(view, key, value, b.ttl, replacing=True)  # type: ignore[arg-type]
        elif region.active:
            region.remove(b.ns, key)
        return value

    wrapper.refresh = refresh  # type: ignore[attr-defined]
    return wrapper


def _async(func: Callable[..., Any], binding: Binding[Any, Any], spec: TagSpec) -> Callable[..., Any]:
    @functools.wraps(func)
    async def wrapper(*args: Any, **kwargs: Any) -> Any:
        b = binding if binding.epoch == binding.source.epoch else binding.current()
        try:
            key = b.make_key(args, kwargs)
        except _BindError:
            return await func(*args, **kwargs)
        names = spec.names(args, kwargs)
        if uncached(names):
            return await func(*args, **kwargs)
        view = TaggedView(b.ns, names)
        call = functools.partial(func, *args, **kwargs)
        if _trace.ON:
            return await _trace.atraced(b, view, key, call)  # type: ignore[arg-type]
        return await b.region.engine.aget_or_create(view, key, call, b.ttl)  # type: ignore[arg-type]

    async def refresh(*args: Any, **kwargs: Any) -> Any:
        """Await the function now, store its result (with its tags' versions) and return it."""
        b = binding.current()
        key = _key(func, b, args, kwargs)
        names = spec.names(args, kwargs)
        region, engine = b.region, b.region.engine
        view = None
        if region.active and not uncached(names):
            view = await engine.call_io(_prepared, b, names, key)
        value = await func(*args, **kwargs)
        if view is not None and view.versions is not None:
            store = functools.partial(region.store_entry, replacing=True)
            await engine.call_io(store, view, key, value, b.ttl)
        elif region.active:
            await engine.call_io(region.remove, b.ns, key)
        return value

    wrapper.refresh = refresh  # type: ignore[attr-defined]
    return wrapper


def _key(
    func: Callable[..., Any], b: Binding[Any, Any], args: tuple[Any, ...], kwargs: dict[str, Any]
) -> Any:
    try:
        return b.make_key(args, kwargs)
    except _BindError:
        func(*args, **kwargs)  # raises the TypeError for a call that does not fit
        raise


def _prepared(b: Binding[Any, Any], names: tuple[str, ...], key: Any) -> TaggedView:
    """A view holding the versions read now (``versions`` stays ``None`` when that failed)."""
    view = TaggedView(b.ns, names)
    try:
        view.prepare(key)
    except Exception as exc:
        b.region.failed("refresh", exc)
    return view
