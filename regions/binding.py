"""Binding a call's arguments to the function's signature, and building the key text from them.

:class:`KeyBuilder` turns ``(args, kwargs)`` into the argument part of a key, with defaults applied,
through :func:`regions.keys.encode`; repeated small calls are memoised.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Hashable
from typing import Any

from .errors import UncacheableArgument
from .keys import ATOMIC_TYPES, encode, encode_argument

#: Entries kept by the small per-function memos of encoded keys before they start over.
MEMO_SIZE = 1024

#: Longest argument text the memo keeps (with its arguments): larger calls are encoded every time.
MEMO_TEXT_LIMIT = 256

class BindError(Exception):
    """Arguments do not fit the signature: let the function raise its own TypeError."""


class ArgumentBinder:
    """Turns ``(args, kwargs)`` into the tuple of parameter values, defaults applied.

    ``g(10)``, ``g(10, 2)``, ``g(a=10)`` and ``g(b=2, a=10)`` all give ``(10, 2)`` when ``b``
    defaults to 2. Plain positional calls of simple signatures skip :meth:`inspect.Signature.bind`.
    """

    def __init__(self, func: Callable[..., Any]) -> None:
        self.signature = inspect.signature(func)
        params = list(self.signature.parameters.values())
        self.names = [p.name for p in params]
        simple = all(p.kind is p.POSITIONAL_OR_KEYWORD for p in params)
        self.size = len(params) if simple else -1
        self.required = sum(1 for p in params if p.default is p.empty)
        self.defaults = tuple(p.default for p in params[self.required :])
        if any(p.default is p.empty for p in params[self.required :]):
            self.size = -1  # unusual ordering (only possible with keyword-only params): always bind

    def values(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[Any, ...]:
        size = self.size
        if not kwargs and size >= 0:
            n = len(args)
            if n == size:
                return args
            if self.required <= n < size:
                return args + self.defaults[n - self.required :]
        try:
            bound = self.signature.bind(*args, **kwargs)
        except TypeError:
            raise BindError from None
        bound.apply_defaults()
        return tuple(bound.arguments.values())


class KeyBuilder:
    """Builds the argument part of a function's cache key."""

    def __init__(self, func: Callable[..., Any], name: str, key: Callable[..., Any] | None = None) -> None:
        self.func_name = name
        self.binder = ArgumentBinder(func)
        self.custom = key
        #: text keys of recent small all-atomic positional calls (exact-type values: a dict key is safe)
        self._texts: dict[tuple[Any, ...], str] = {}

    def text(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> str:
        """Encoded argument part, e.g. ``i10,s3:abc``."""
        if self.custom is not None:
            return encode_argument(self.func_name, "key=", self._custom_parts(args, kwargs))
        if not kwargs:  # repeated plain calls: reuse the text built for the same atomic arguments
            for arg in args:
                if type(arg) not in ATOMIC_TYPES:
                    break
            else:
                text = self._texts.get(args)
                if text is None:
                    text = self._encode(args, kwargs)
                    if len(text) <= MEMO_TEXT_LIMIT:  # never keep large arguments alive
                        if len(self._texts) >= MEMO_SIZE:
                            self._texts.clear()
                        self._texts[args] = text
                return text
        return self._encode(args, kwargs)

    def _encode(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> str:
        values = self.binder.values(args, kwargs)
        try:
            return ",".join(map(encode, values))
        except MemoryError:
            raise
        except Exception as exc:  # find the argument to name in the error
            names = self.binder.names
            for name, value in zip(names, values, strict=True):
                encode_argument(self.func_name, name, value)
            raise UncacheableArgument(  # the arguments encode one by one: name them all
                f"{self.func_name}: the arguments cannot be part of a cache key: "
                f"encoding them raised {type(exc).__name__}: {exc}"
            ) from exc

    def native(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Hashable:
        """Key for in-process stores: the value tuple itself when every value is atomic, else text.

        Text keys are ``str`` and value tuples are ``tuple``, so the two kinds never meet.
        """
        if self.custom is not None:
            return self.text(args, kwargs)
        values = self.binder.values(args, kwargs)
        for value in values:
            if type(value) not in ATOMIC_TYPES:
                return self.text(args, kwargs)
        return values

    def _custom_parts(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        custom = self.custom
        assert custom is not None  # only called for a function with a key= callable
        try:
            return custom(*args, **kwargs)
        except TypeError:
            self.binder.values(args, kwargs)  # bad call: BindError lets the function raise
            raise
