"""Tags: invalidate every entry that rests on one piece of data, whatever function and key it has.

``@region("functions", tags=lambda post_id: [f"post:{post_id}"])`` gives each entry of the function
the tags its arguments name (a callable taking the function's parameters, or a fixed list), and
``invalidate_on=[...]`` fixed tags made from objects. ``manager.invalidate_tags("post:7")`` then
makes every entry carrying ``post:7``, of every function of every region of that manager, a miss,
in every process that shares the region's storage.

How: each tag has a *version* in the region's store (memcached counters on every server, small
files in a file region's folder, in-process integers for memory and request regions). An entry is
stored with the versions read before its value was computed, and served only while they are still
the current ones; ``invalidate_tags`` gives the tags new versions. A memcached hit reads the entry
and its tags' counters in one ``get_many``; a missing version (never created, evicted, a restarted
server) is a miss, and only a miss creates it.

Tags are strings. Other objects become strings through adapters (:func:`register`): the Django app
registers model classes (``"app_label.model"``) and model instances (``"app_label.model:pk"``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from ..errors import ConfigurationError
from ..keys import ATOMIC_TYPES

#: Calls whose tags a function's :class:`TagSpec` keeps before it starts over, and the longest
#: ``str``/``bytes`` argument such a call may have (larger ones are not kept alive).
NAMES_MEMO_SIZE = 1024
NAMES_MEMO_TEXT_LIMIT = 256

Adapter = Callable[[Any], str]
_ADAPTERS: list[tuple[type, Adapter]] = []
#: Set by integrations (the Django app) through :func:`set_uncached_check`: ``names -> True`` when
#: this thread must not use cached entries carrying them now (it changed their data in a
#: transaction not yet committed). Read as it is by the decorator's inline tagged hit.
check_uncached: Callable[[tuple[str, ...]], bool] | None = None


class TagError(ConfigurationError, TypeError):
    """A tag that is not a string and that no adapter turns into one."""


def register(kind: type, adapter: Adapter) -> None:
    """Turn instances of ``kind`` (``isinstance``) into tags with ``adapter(obj) -> str``.

    Adapters registered later are tried first. ``register(Model, lambda obj: ...)``
    """
    _ADAPTERS.insert(0, (kind, adapter))


def unregister(kind: type) -> None:
    """Forget the adapters of ``kind``."""
    _ADAPTERS[:] = [(k, a) for k, a in _ADAPTERS if k is not kind]


def set_uncached_check(check: Callable[[tuple[str, ...]], bool] | None) -> None:
    """Install (or remove, with ``None``) the check that makes a call skip the cache
    (:data:`check_uncached`)."""
    global check_uncached
    check_uncached = check


def uncached(names: tuple[str, ...]) -> bool:
    check = check_uncached
    return check is not None and check(names)


def tag_of(obj: Any, where: str) -> str:
    """``obj`` as a tag; :class:`TagError` naming ``where`` (function and argument) otherwise."""
    if type(obj) is str:
        if obj:
            return obj
        raise TagError(f"{where}: the empty string is not a tag; name the data, e.g. 'post:7'")
    for kind, adapter in _ADAPTERS:
        if isinstance(obj, kind):
            tag = adapter(obj)
            if not isinstance(tag, str) or not tag:
                raise TagError(f"{where}: the adapter for {kind.__name__} made {tag!r}, not a tag string")
            return tag
    if isinstance(obj, str):
        return str(obj)
    raise TagError(
        f"{where}: {obj!r} ({type(obj).__name__}) is not a tag: tags are strings such as 'post:7'; "
        "return strings, or turn such objects into tags with regions.tags.register(type, function) "
        "(the Django app does it for model classes and instances)"
    )


def tags_of(objects: Iterable[Any], where: str) -> tuple[str, ...]:
    """Distinct tags of ``objects``, in order."""
    if type(objects) is list or type(objects) is tuple:  # the common case: non-empty strings
        for obj in objects:
            if type(obj) is not str or not obj:
                break
        else:
            return tuple(dict.fromkeys(objects)) if len(objects) > 1 else tuple(objects)
    if isinstance(objects, (str, bytes)) or not isinstance(objects, Iterable):
        raise TagError(f"{where}: {objects!r} is not a list of tags; return a list, e.g. ['post:7']")
    return tuple(dict.fromkeys(tag_of(obj, where) for obj in objects))


class TagSpec:
    """The tags of one decorated function: fixed ones, plus those its ``tags`` callable returns.

    ``tags=`` is a function of the call's arguments (the in-process tagged hit already serves an
    entry under the names it was stored with): the names of a call whose arguments are all
    positional and of exact-equality types (:data:`~regions.keys.ATOMIC_TYPES`, immutable) are
    kept per argument tuple, so a hit does not call ``tags=`` again.
    """

    __slots__ = ("qualname", "fixed", "func", "memo")

    def __init__(self, qualname: str, tags: Any, invalidate_on: Iterable[Any] | None) -> None:
        self.qualname = qualname
        fixed: tuple[str, ...] = ()
        if invalidate_on is not None:
            fixed = tags_of(invalidate_on, f"{qualname}: invalidate_on")
        self.func: Callable[..., Iterable[Any]] | None = None
        if callable(tags):
            self.func = tags
        elif tags is not None:
            fixed += tags_of(tags, f"{qualname}: tags")
        self.fixed = tuple(dict.fromkeys(fixed))
        self.memo: dict[tuple[Any, ...], tuple[str, ...]] = {}

    def names(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[str, ...]:
        """The tags of one call."""
        if self.func is None:
            return self.fixed
        if kwargs:
            return self.computed(args, kwargs)
        for arg in args:
            if type(arg) not in ATOMIC_TYPES:
                return self.computed(args, kwargs)
        found = self.memo.get(args)
        if found is None:
            found = self.computed(args, kwargs)
            for arg in args:
                if (type(arg) is str or type(arg) is bytes) and len(arg) > NAMES_MEMO_TEXT_LIMIT:
                    return found  # never keep large arguments alive
            memo = self.memo
            if len(memo) >= NAMES_MEMO_SIZE:
                memo.clear()
            memo[args] = found
        return found

    def computed(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[str, ...]:
        """The tags of one call, from ``tags=`` called now."""
        assert self.func is not None  # only called for a function with a tags= callable
        found = tags_of(self.func(*args, **kwargs), f"{self.qualname}: the value returned by tags=")
        return tuple(dict.fromkeys(self.fixed + found)) if self.fixed else found
