"""Cache keys: typed, unambiguous encoding of arguments, and the backend length guard.

Every supported value has one text form that starts with a type tag, and strings carry their
length, so no two different argument lists (``f(1)`` / ``f('1')``, ``f('a b')`` / ``f('a', 'b')``)
can encode to the same text. Unsupported values raise :class:`UncacheableArgument` instead of
falling back to ``str()`` or ``repr()``.
"""

from __future__ import annotations

import datetime
import decimal
import enum
import hashlib
import inspect
import re
import uuid
from collections.abc import Callable, Hashable
from typing import Any

from .errors import UncacheableArgument

_Encoder = Callable[[Any], str]

#: Types whose values are equal only to values of the same type, so a tuple of them can be a dict
#: key as it is: ``(1, 'a')`` never equals a tuple of other types. ``bool`` is not one (``True == 1``),
#: nor ``float`` (``1.0 == 1``, ``0.0 == -0.0``).
ATOMIC_TYPES = frozenset({int, str, bytes, type(None)})

#: Entries kept by the small per-function memos of encoded keys before they start over.
MEMO_SIZE = 1024

_registered: dict[type, Callable[[Any], Any]] = {}
_cache: dict[type, _Encoder | None] = {}


class _Reject(Exception):
    """Raised inside the encoder; turned into UncacheableArgument with the argument's name."""


def register(cls: type, func: Callable[[Any], Any]) -> None:
    """Make instances of ``cls`` (and subclasses) cacheable: ``func(obj)`` returns key parts.

    ``func`` may raise :class:`UncacheableArgument` to reject an instance with a remedy.
    """
    _registered[cls] = func
    _cache.clear()


def unregister(cls: type) -> None:
    _registered.pop(cls, None)
    _cache.clear()


def _str(value: str) -> str:
    return f"s{len(value)}:{value}"


def _qualname(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def _seq(open_: str, close: str) -> _Encoder:
    def encode_seq(value: Any) -> str:
        return open_ + ",".join(map(encode, value)) + close

    return encode_seq


def _unordered(open_: str, close: str) -> _Encoder:
    def encode_set(value: Any) -> str:
        return open_ + ",".join(sorted(map(encode, value))) + close

    return encode_set


def _dict(value: dict[Any, Any]) -> str:
    return "{" + ",".join(sorted(f"{encode(k)}={encode(v)}" for k, v in value.items())) + "}"


def _float(value: float) -> str:
    return "f" + repr(float(value))


_EXACT: dict[type, _Encoder] = {
    type(None): lambda v: "N",
    bool: lambda v: "T" if v else "F",
    int: lambda v: f"i{int(v)}",
    float: _float,
    str: lambda v: _str(str(v)),
    bytes: lambda v: "x" + bytes(v).hex(),
    bytearray: lambda v: "y" + bytes(v).hex(),
    decimal.Decimal: lambda v: f"m{v}",
    datetime.datetime: lambda v: "t" + v.isoformat(),
    datetime.date: lambda v: "d" + v.isoformat(),
    datetime.time: lambda v: "h" + v.isoformat(),
    datetime.timedelta: lambda v: f"D{v.days}.{v.seconds}.{v.microseconds}",
    uuid.UUID: lambda v: "u" + v.hex,
    tuple: _seq("(", ")"),
    list: _seq("[", "]"),
    dict: _dict,
    set: _unordered("<", ">"),
    frozenset: _unordered("z<", ">"),
}


def _custom(method: Callable[[Any], Any]) -> _Encoder:
    def encode_custom(value: Any) -> str:
        return f"o{_str(_qualname(type(value)))}({encode(method(value))})"

    return encode_custom


def _enum(value: enum.Enum) -> str:
    return f"e{_str(_qualname(type(value)))}{_str(value.name)}"


def _class(value: type) -> str:
    return "c" + _str(_qualname(value))


def _reject(reason: str) -> _Encoder:
    def encode_rejected(value: Any) -> str:
        raise _Reject(reason)

    return encode_rejected


def _find(cls: type) -> _Encoder | None:
    """The encoder for ``cls``: registered types first, then the protocol, then builtins by base."""
    for base in cls.__mro__:
        if base in _registered:
            return _custom(_registered[base])
    if hasattr(cls, "__cache_key__"):
        return _custom(lambda v: v.__cache_key__())
    if issubclass(cls, enum.Enum):
        return _enum
    if issubclass(cls, type):
        return _class
    for base in cls.__mro__[1:]:  # subclasses of builtins (str subclasses, namedtuples...) encode as the base
        if base in _EXACT and base is not object:
            return _EXACT[base]
    return None


def encoder_for(cls: type) -> _Encoder | None:
    try:
        return _cache[cls]
    except KeyError:
        pass
    found = _EXACT.get(cls) or _find(cls)
    if len(_cache) < 4096:
        _cache[cls] = found
    return found


def encode(value: Any) -> str:
    """Typed text form of ``value``; raises ``_Reject`` for unsupported values."""
    enc = _EXACT.get(type(value)) or encoder_for(type(value))
    if enc is None:
        raise _Reject(f"values of type {_qualname(type(value))} have no stable cache key")
    return enc(value)


def describe_rejection(func_name: str, arg: str, value: Any, reason: str) -> str:
    cls = type(value)
    return (
        f"{func_name}: argument {arg!r} cannot be part of a cache key: {reason}. "
        f"Pass a value that identifies it instead (an id or a string), define __cache_key__() on "
        f"{cls.__qualname__}, or give the decorator key=<callable returning the key parts>."
    )


def encode_argument(func_name: str, arg: str, value: Any) -> str:
    try:
        return encode(value)
    except _Reject as exc:
        raise UncacheableArgument(describe_rejection(func_name, arg, value, str(exc))) from None
    except UncacheableArgument as exc:  # raised by a registered encoder with its own remedy
        raise UncacheableArgument(f"{func_name}: argument {arg!r}: {exc}") from None
    except RecursionError:
        raise UncacheableArgument(describe_rejection(func_name, arg, value, "it contains itself")) from None


# ---------------------------------------------------------------------------------------------
# Binding arguments to a function's signature


class _BindError(Exception):
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
            raise _BindError from None
        bound.apply_defaults()
        return tuple(bound.arguments.values())


class KeyBuilder:
    """Builds the argument part of a function's cache key."""

    def __init__(self, func: Callable[..., Any], name: str, key: Callable[..., Any] | None = None) -> None:
        self.func_name = name
        self.binder = ArgumentBinder(func)
        self.custom = key
        #: text keys of recent all-atomic positional calls (exact-type values: a dict key is safe)
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
                    if len(self._texts) >= MEMO_SIZE:
                        self._texts.clear()
                    text = self._texts[args] = self._encode(args, kwargs)
                return text
        return self._encode(args, kwargs)

    def _encode(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> str:
        values = self.binder.values(args, kwargs)
        try:
            return ",".join(map(encode, values))
        except Exception:  # find the argument to name in the error
            names = self.binder.names
            for name, value in zip(names, values, strict=True):
                encode_argument(self.func_name, name, value)
            raise

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
        try:
            return self.custom(*args, **kwargs)  # type: ignore[misc]
        except TypeError:
            self.binder.values(args, kwargs)  # bad call: _BindError lets the function raise
            raise


# ---------------------------------------------------------------------------------------------
# Length and character guard for text backends

_UNSAFE = re.compile(r"[^\x21-\x7e]")


def digest(text: str) -> str:
    """160-bit blake2b of ``text``, hex."""
    return hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=20).hexdigest()


def is_safe(key: str, limit: int | None) -> bool:
    """Printable ASCII without whitespace, and within ``limit`` bytes."""
    if not (key.isascii() and key.isprintable()) or " " in key:
        return False
    return limit is None or len(key) <= limit


def safe_namespace(namespace: str, limit: int) -> str:
    """``namespace`` itself if safe and short, else a readable stem plus its digest."""
    if is_safe(namespace, limit):
        return namespace
    stem = _UNSAFE.sub("_", namespace.encode("ascii", "replace").decode())[:80]
    return f"{stem}~{digest(namespace)[:16]}"


def guarded(namespace: str, argpart: str, limit: int) -> str:
    """``namespace:argpart``, or ``namespace:#<digest of argpart>`` when too long or unsafe.

    Encoded argument parts never start with ``#``, so a digested key cannot equal a plain one.
    """
    key = f"{namespace}:{argpart}"
    if is_safe(key, limit):
        return key
    return f"{safe_namespace(namespace, limit - 42)}:#{digest(argpart)}"
