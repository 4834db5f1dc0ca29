"""The decorator: caches a function's results in a region, keyed by its bound arguments.

A call binds its arguments to a key, finds where its entry lives (:func:`_entries`: the function's
namespace, or for a function with tags a :class:`~regions.tags.view.TaggedView` of it that adds the
tags' versions) and hands both to the region's compute-once engine (:mod:`regions.engine`): one
backend round trip for a hit; locks, stale serving and waiting on a miss. Sync and async calls
differ only in the engine runner they use.

The inline hit path: the sync wrapper, on an in-process store, with positional arguments of
exact-equality types, reads the entry itself (the key is then ``args`` itself) and falls back to
the general path for anything else. It is step 1 of the protocol written out, because a call
costs a measurable share of such a hit: a memory region's record (its expiry precomputed, its
use stamped with the time the freshness check read), a request scope's table, a synced or tiered
region's local tier while its log is not due, else ``get_entry``. A function with tags checks the
stamp of the entry against the versions kept in this process (memory, request and synced
regions), once per change of those versions for a memory record. A manager's bindings check no
epoch per call: a switch of tracing turns their inline hits off (:func:`_inline_off`).
"""

from __future__ import annotations

import functools
import inspect
import time
import weakref
from collections.abc import Callable, Hashable
from typing import TYPE_CHECKING, Any, Generic, ParamSpec, Protocol, TypeVar, overload

from . import tags as _tags
from . import trace as _trace
from .backends.memory import ENTRY, USED
from .binding import BindError, KeyBuilder
from .engine.flights import FLIGHTS
from .errors import ConfigurationError
from .keys import ATOMIC_TYPES
from .region import DEFAULT, Region
from .scope import CURRENT
from .tags import TagSpec, uncached
from .tags.versions import LocalVersions
from .tags.view import STAMP, LoopTaggedView, TaggedView

if TYPE_CHECKING:
    from .backends.contract import Backend, Entries, Entry

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
        "counts",
        "table",
        "slot",
        "synced",
        "direct",
        "tags",
        "__weakref__",
    )

    def __init__(self, source: Source, name: str, qualname: str, timeout: Any, builder: KeyBuilder) -> None:
        self.source, self.name, self.qualname = source, name, qualname
        self.timeout, self.builder = timeout, builder
        self.epoch = self.fast_epoch = -1
        self.inline_off()
        _LIVE.add(self)

    def inline_off(self) -> None:
        """No inline hit until the next rebinding (made at the next call that is not inline)."""
        self.table: dict[Hashable, list[Any]] | None = None
        self.slot: Hashable | None = None
        self.synced: tuple[dict[Hashable, list[Any]], Any] | None = None
        self.tags: LocalVersions | None = None
        self.direct = False
        self.fast_epoch = self.epoch = -1

    def current(self) -> Binding[P, R]:
        if self.epoch != self.source.epoch:
            epoch = self.source.epoch
            region = self.source.get_region(self.name)
            self.region = region
            ns: Backend = region.namespace(self.qualname)
            self.ns = ns
            self.make_key = self.builder.native if region.store.native_keys else self.builder.text
            self.ttl = region.ttl(self.timeout)
            self.get_entry = ns.get_entry
            self.counts = region.counts
            # The inline hit: in-process stores only, and off while tracing. What it reads itself
            # (Backend.inline): a memory namespace's table; a request namespace's slot in the current
            # scope; a synced or tiered namespace's local table and its sync (the log's look when due
            # and a degraded sync are left to get_entry); else it calls get_entry.
            fast = region.store.native_keys and not _trace.ON
            inline = getattr(ns, "inline", "") if fast else ""
            self.table = ns.table if inline == "table" else None
            self.slot = ns.slot if inline == "scope" else None
            self.synced = (ns.table, ns.sync) if inline == "synced" else None
            self.direct = fast and not inline
            # tag versions kept in this process (memory, request, synced): the inline tagged hit's
            self.tags = getattr(region.store.tags, "local_versions", None) if fast else None
            self.fast_epoch = epoch if fast else -1
            self.epoch = epoch
        return self

    def key(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Hashable:
        return self.make_key(args, kwargs)


#: Every binding, so that a switch of tracing turns their inline hits off at once (a manager's
#: decorators check no epoch on the inline hit: its regions never change otherwise).
_LIVE: weakref.WeakSet[Binding[Any, Any]] = weakref.WeakSet()


def _inline_off() -> None:
    for binding in list(_LIVE):
        binding.inline_off()


_trace.on_switch(_inline_off)


def current_stamp(stamped: Any, tags: LocalVersions) -> bool:
    """Whether ``stamped``, a tagged entry's value slot (:func:`regions.tags.view.stamp`), carries
    the current versions of its tags (anything else: ``False``, for TaggedView's path to judge)."""
    if type(stamped) is not tuple or len(stamped) != 4 or stamped[0] != STAMP:
        return False
    try:
        return tuple(map(tags.versions.get, stamped[1])) == stamped[2]
    except Exception:  # not a stamp of ours after all
        return False


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
        # a process started by multiprocessing spawn/forkserver imports the parent's script as
        # __mp_main__: keyed as __main__, its functions share entries with the parent's
        module = "__main__" if func.__module__ == "__mp_main__" else func.__module__
        qualname = f"{module}.{func.__qualname__}"
        check_timeout(qualname, timeout)
        binding: Binding[P, R] = Binding(source, name, qualname, timeout, KeyBuilder(func, qualname, key))
        if not source.binds_late:
            binding.current()  # a manager's regions are fixed: unknown names fail at decoration time
        spec = None
        if tags is not None or invalidate_on is not None:
            spec = TagSpec(qualname, tags, invalidate_on)  # fixed tags are checked now
        make = _async_wrapper if inspect.iscoroutinefunction(func) else _sync_wrapper
        wrapper = make(func, binding, spec)
        wrapper.uncached = func  # type: ignore[attr-defined]
        wrapper.region_name = name  # type: ignore[attr-defined]
        if spec is not None:
            wrapper.tags = spec  # type: ignore[attr-defined]
        return wrapper  # type: ignore[return-value]

    return decorator


def _entries(
    b: Binding[Any, Any], spec: TagSpec | None, args: tuple[Any, ...], kwargs: dict[str, Any],
    view: type[TaggedView] = TaggedView,
) -> Entries | None:
    """Where this call's entry lives: the function's namespace, a ``view`` of it that adds the
    versions of the call's tags, or ``None``: the call skips the cache (its tags' data changed in a
    transaction not yet committed)."""
    if spec is None:
        return b.ns
    names = spec.names(args, kwargs)
    return None if uncached(names) else view(b.ns, names)


def _prepared(
    b: Binding[Any, Any], spec: TagSpec | None, args: tuple[Any, ...], kwargs: dict[str, Any], key: Hashable
) -> Entries | None:
    """:func:`_entries` for a refresh, with the tags' versions read (or created) before the
    computation; ``None`` when they could not be read: the entry is then removed, not stored."""
    ns = _entries(b, spec, args, kwargs)
    if not isinstance(ns, TaggedView):
        return ns
    try:
        ns.prepare(key)
    except Exception as exc:
        b.region.failed("refresh", exc)
    return ns if ns.versions is not None else None


class _Methods:
    """``invalidate``, ``cache_key`` and ``invalidate_all`` of one decorated function (sync)."""

    def __init__(self, func: Callable[..., Any], binding: Binding[Any, Any]) -> None:
        self.func, self.binding = func, binding

    def key(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[Binding[Any, Any], Hashable]:
        b = self.binding.current()
        try:
            return b, b.make_key(args, kwargs)
        except BindError:
            self.func(*args, **kwargs)  # raises the TypeError for a call that does not fit
            raise

    def invalidate(self, *args: Any, **kwargs: Any) -> bool:
        """Forget the entry for these arguments; ``False`` when the backend was not reached."""
        b, key = self.key(args, kwargs)
        return b.region.remove(b.ns, key)

    def cache_key(self, *args: Any, **kwargs: Any) -> Hashable | None:
        """The key for these arguments, exactly as the backend sees it (``None`` while the
        backend cannot be asked for the generation counters that are part of it)."""
        b, key = self.key(args, kwargs)
        try:
            return b.ns.wire_key(key)
        except Exception as exc:
            b.region.failed("cache_key", exc)
            return None

    def invalidate_all(self) -> bool:
        """Forget every entry of this function in its region; ``False`` when the backend was not
        reached (a memcached region retries it before serving reads from that server again)."""
        b = self.binding.current()
        return b.region.remove_all(b.ns)


def _sync_wrapper(
    func: Callable[..., Any], binding: Binding[Any, Any], spec: TagSpec | None
) -> Callable[..., Any]:
    now = time.time
    source = binding.source
    builder = binding.builder
    size = builder.binder.size if builder.custom is None else -1
    atomic = ATOMIC_TYPES
    current = CURRENT.get
    monotonic = time.monotonic
    late = source.binds_late
    methods = _Methods(func, binding)

    def general(*args: Any, **kwargs: Any) -> Any:
        b = binding if binding.epoch == source.epoch else binding.current()
        try:
            key = b.make_key(args, kwargs)
        except BindError:
            return func(*args, **kwargs)  # the call does not fit the signature: let Python say why
        ns: Entries = b.ns
        if spec is not None:  # _entries() written out: every tagged hit's path
            names = spec.names(args, kwargs)
            check = _tags.check_uncached  # uncached(names), written out
            if check is not None and check(names):
                return func(*args, **kwargs)
            ns = TaggedView(b.ns, names)
        region = b.region
        if _trace.ON:
            return _trace.traced(b, ns, key, functools.partial(func, *args, **kwargs))
        seq = FLIGHTS.completed
        entry, fresh = region.read(ns, key)
        if fresh:
            return entry[2]  # type: ignore[index]
        return region.engine.fill(ns, key, entry, seq, functools.partial(func, *args, **kwargs), b.ttl)

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        # The inline hit path (see the module docstring): in-process stores, all positional, every
        # argument of an exact-equality type. The key is then args itself, the same key
        # KeyBuilder.native builds for these arguments. A manager's bindings are turned off by a
        # switch of tracing (_inline_off); the default source's change with configure(): epoch.
        fast = binding.fast_epoch
        if kwargs or len(args) != size or fast < 0 or (late and fast != source.epoch):
            return general(*args, **kwargs)
        if size == 1:  # the common case, written out
            if type(args[0]) not in atomic:
                return general(*args, **kwargs)
        else:
            for arg in args:
                if type(arg) not in atomic:
                    return general(*args, **kwargs)
        table = binding.table
        if table is not None:  # a memory region: its record read here, the use stamped
            rec = table.get(args)
            if rec is not None:
                t = now()
                if rec[0] > t:  # rec: [expires, value, last use, entry, checked] (backends.memory)
                    rec[2] = t
                    binding.counts.hits += 1
                    return rec[1]
            return general(*args, **kwargs)
        slot = binding.slot
        if slot is not None:  # a request region: the current scope's table of this function
            data = current()
            table = None if data is None else data.get(slot)
            entry = None if table is None else table.get(args)
            if entry is not None:
                ttl = entry[1]
                if ttl is None or entry[0] + ttl > now():
                    binding.counts.hits += 1
                    return entry[2]
            return general(*args, **kwargs)
        synced = binding.synced
        if synced is not None:  # a synced or tiered region's local tier (when the log is not due)
            table, sync = synced
            if monotonic() < sync.due and not sync.degraded:
                rec = table.get(args)
                if rec is not None:
                    t = now()
                    if rec[0] > t:
                        rec[2] = t
                        binding.counts.hits += 1
                        return rec[1]
            return general(*args, **kwargs)
        if binding.direct:
            try:
                found = binding.get_entry(args)
            except Exception:
                return general(*args, **kwargs)
            if found is not None:
                ttl = found[1]
                if ttl is None or found[0] + ttl > now():
                    binding.counts.hits += 1
                    return found[2]
        return general(*args, **kwargs)

    @functools.wraps(func)
    def tagged(*args: Any, **kwargs: Any) -> Any:
        # The inline hit of a function with tags, on an in-process store whose tag versions live in
        # this process: the untagged inline hit, then the entry's stamp checked here against the
        # current versions of the tags it was stored with (those of its arguments, which are the
        # same arguments: the tags= callable is a function of them), once per change of the
        # versions for a memory record (its mark). Else TaggedView's path.
        fast = binding.fast_epoch
        if kwargs or len(args) != size or fast < 0 or (late and fast != source.epoch):
            return general(*args, **kwargs)
        if size == 1:
            if type(args[0]) not in atomic:
                return general(*args, **kwargs)
        else:
            for arg in args:
                if type(arg) not in atomic:
                    return general(*args, **kwargs)
        tags = binding.tags
        if tags is None:
            return general(*args, **kwargs)
        table = binding.table
        if table is not None:  # a memory region
            rec = table.get(args)
            if rec is None:
                return general(*args, **kwargs)
            t = now()
            if rec[0] <= t:
                return general(*args, **kwargs)
            stamped = rec[1]
            serial = tags.serial  # read before the versions (see LocalVersions.serial)
            if rec[4] is not serial:
                if not current_stamp(stamped, tags):
                    return general(*args, **kwargs)
                rec[4] = serial
            if _tags.check_uncached is not None and _tags.check_uncached(stamped[1]):
                return general(*args, **kwargs)
            rec[2] = t
            binding.counts.hits += 1
            return stamped[3]
        entry = inline_entry(args)
        if entry is None:
            return general(*args, **kwargs)
        ttl = entry[1]
        if ttl is not None and entry[0] + ttl <= now():
            return general(*args, **kwargs)
        stamped = entry[2]
        if not current_stamp(stamped, tags):
            return general(*args, **kwargs)
        if _tags.check_uncached is not None and _tags.check_uncached(stamped[1]):
            return general(*args, **kwargs)
        binding.counts.hits += 1
        return stamped[3]

    def inline_entry(args: tuple[Any, ...]) -> Entry | None:
        """The entry the inline tagged hit finds itself on a request, synced or tiered region
        (``None``: the general path looks, or decides)."""
        slot = binding.slot
        if slot is not None:
            data = current()
            table = None if data is None else data.get(slot)
            return None if table is None else table.get(args)
        synced = binding.synced
        if synced is not None:
            table, sync = synced
            if monotonic() >= sync.due or sync.degraded:
                return None
            rec = table.get(args)
            if rec is None:
                return None
            rec[USED] = now()
            return rec[ENTRY]
        if binding.direct:
            try:
                return binding.get_entry(args)
            except Exception:
                return None
        return None

    def refresh(*args: Any, **kwargs: Any) -> Any:
        """Call the function now, store its result for these arguments (with its tags' current
        versions) and return it. When the store fails, or the versions cannot be read, the old
        entry is removed instead (never served again)."""
        b, key = methods.key(args, kwargs)
        region = b.region
        ns = _prepared(b, spec, args, kwargs, key) if region.active else None
        value = func(*args, **kwargs)
        if region.active:
            if ns is not None:
                region.store_entry(ns, key, value, b.ttl, replacing=True)
            else:
                region.remove(b.ns, key)
        return value

    out = wrapper if spec is None else tagged
    out.invalidate = methods.invalidate  # type: ignore[attr-defined]
    out.refresh = refresh  # type: ignore[attr-defined]
    out.cache_key = methods.cache_key  # type: ignore[attr-defined]
    out.invalidate_all = methods.invalidate_all  # type: ignore[attr-defined]
    return out


def _async_wrapper(
    func: Callable[..., Any], binding: Binding[Any, Any], spec: TagSpec | None
) -> Callable[..., Any]:
    methods = _Methods(func, binding)

    @functools.wraps(func)
    async def wrapper(*args: Any, **kwargs: Any) -> Any:
        b = binding if binding.epoch == binding.source.epoch else binding.current()
        try:
            key = b.make_key(args, kwargs)
        except BindError:
            return await func(*args, **kwargs)
        ns: Entries | None
        if spec is None:
            ns = b.ns
        else:  # a backend reading tagged entries on the loop needs no I/O thread for a hit either
            view = LoopTaggedView if hasattr(b.ns, "aget_entry_tagged") else TaggedView
            ns = _entries(b, spec, args, kwargs, view)
        if ns is None:
            return await func(*args, **kwargs)
        region = b.region
        if _trace.ON:
            return await _trace.atraced(b, ns, key, functools.partial(func, *args, **kwargs))
        if region.store.active and hasattr(ns, "aget_entry"):  # read on the loop: step 1 written out
            seq = FLIGHTS.completed
            entry, fresh = await region.aread(ns, key)  # type: ignore[arg-type]
            if fresh:
                return entry[2]  # type: ignore[index]
            creator = functools.partial(func, *args, **kwargs)
            return await region.engine.afill(ns, key, entry, seq, creator, b.ttl)
        return await region.engine.aget_or_create(ns, key, functools.partial(func, *args, **kwargs), b.ttl)

    async def invalidate(*args: Any, **kwargs: Any) -> bool:
        """Forget the entry for these arguments; ``False`` when the backend was not reached."""
        return await binding.current().region.call_io(methods.invalidate, *args, **kwargs)

    async def refresh(*args: Any, **kwargs: Any) -> Any:
        """Await the function now, store its result for these arguments (with its tags' current
        versions) and return it; see the sync ``refresh``."""
        b = binding.current()
        try:
            key = b.make_key(args, kwargs)
        except BindError:
            return await func(*args, **kwargs)
        region = b.region
        ns = await region.call_io(_prepared, b, spec, args, kwargs, key) if region.active else None
        value = await func(*args, **kwargs)
        if region.active:
            if ns is not None:
                store = functools.partial(region.store_entry, replacing=True)
                await region.call_io(store, ns, key, value, b.ttl)
            else:
                await region.call_io(region.remove, b.ns, key)
        return value

    async def invalidate_all() -> bool:
        """Forget every entry of this function in its region; ``False`` when the backend was not reached."""
        return await binding.current().region.call_io(methods.invalidate_all)

    wrapper.invalidate = invalidate  # type: ignore[attr-defined]
    wrapper.refresh = refresh  # type: ignore[attr-defined]
    wrapper.cache_key = methods.cache_key  # type: ignore[attr-defined]
    wrapper.invalidate_all = invalidate_all  # type: ignore[attr-defined]
    return wrapper
