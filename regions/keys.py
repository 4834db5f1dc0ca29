"""Cache keys: typed, unambiguous encoding of argument values (binding calls: :mod:`regions.binding`).

Every supported value has one text form that starts with a type tag, and strings carry their
length, so no two different argument lists (``f(1)`` / ``f('1')``, ``f('a b')`` / ``f('a', 'b')``)
can encode to the same text. The tag names the exact type: a ``str`` subclass, a namedtuple or a
dataclass never shares a key with a plain ``str`` or ``tuple``. Unsupported values raise
:class:`UncacheableArgument` instead of falling back to ``str()`` or ``repr()``.

Tags: ``N`` None, ``T``/``F`` bool, ``i`` int (up to 20 digits), ``I`` larger int (hex), ``f`` float,
``s`` str, ``x`` bytes, ``y`` bytearray, ``m`` Decimal, ``t``/``d``/``h``/``D`` datetime, date,
time, timedelta, ``u`` UUID, ``(`` ``[`` ``{`` ``<`` ``z<`` tuple, list, dict, set, frozenset,
``e`` enum member, ``c`` class, ``o`` ``__cache_key__`` or registered, ``a`` dataclass,
``S`` subclass of one of these builtins (``S<type>(<base encoding>)``); ``#`` starts a digest.
"""

from __future__ import annotations

import collections
import dataclasses
import datetime
import decimal
import enum
import uuid
from collections.abc import Callable
from typing import Any

from .errors import UncacheableArgument

#: ``encoder(value, path)``: ``path`` holds the ids of the containers being encoded around
#: ``value`` (``None`` at the top), to tell a cycle from deep nesting.
_Encoder = Callable[[Any, "set[int] | None"], str]

#: Types whose values are equal only to values of the same type, so a tuple of them can be a dict
#: key as it is: ``(1, 'a')`` never equals a tuple of other types. ``bool`` is not one (``True == 1``),
#: nor ``float`` (``1.0 == 1``, ``0.0 == -0.0``).
ATOMIC_TYPES = frozenset({int, str, bytes, type(None)})

#: Containers (and objects keyed by their parts) nested deeper than this are rejected.
MAX_DEPTH = 100

#: Ints within +-this are written in decimal (every 64-bit int); larger ones in hex, which has
#: no conversion limit (``sys.set_int_max_str_digits``).
_DECIMAL_INTS = 10**20

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
    """Forget the encoder registered for ``cls``."""
    _registered.pop(cls, None)
    _cache.clear()


def _str(value: str) -> str:
    return f"s{len(value)}:{value}"


def _qualname(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def _enter(value: Any, path: set[int] | None) -> set[int]:
    """``path`` with ``value`` added; rejects a value already on it, or a path already too long."""
    if path is None:
        return {id(value)}
    if id(value) in path:
        raise _Reject("it contains itself")
    if len(path) >= MAX_DEPTH:
        raise _Reject(f"it is nested more than {MAX_DEPTH} levels deep; pass a flatter value")
    path.add(id(value))
    return path


def _seq(open_: str, close: str) -> _Encoder:
    def encode_seq(value: Any, path: set[int] | None) -> str:
        path = _enter(value, path)
        text = open_ + ",".join([encode(v, path) for v in value]) + close
        path.discard(id(value))
        return text

    return encode_seq


def _unordered(open_: str, close: str) -> _Encoder:
    def encode_set(value: Any, path: set[int] | None) -> str:
        path = _enter(value, path)
        text = open_ + ",".join(sorted([encode(v, path) for v in value])) + close
        path.discard(id(value))
        return text

    return encode_set


def _dict(value: dict[Any, Any], path: set[int] | None) -> str:
    path = _enter(value, path)
    text = "{" + ",".join(sorted([f"{encode(k, path)}={encode(v, path)}" for k, v in value.items()])) + "}"
    path.discard(id(value))
    return text


def _ordered_dict(value: collections.OrderedDict[Any, Any], path: set[int] | None) -> str:
    """OrderedDicts compare in order, so their items are encoded in order."""
    path = _enter(value, path)
    text = "{" + ",".join([f"{encode(k, path)}={encode(v, path)}" for k, v in value.items()]) + "}"
    path.discard(id(value))
    return text


def _int(value: int, path: set[int] | None) -> str:
    if -_DECIMAL_INTS < value < _DECIMAL_INTS:
        return f"i{value}"
    return f"I{value:x}"


def _float(value: float, path: set[int] | None) -> str:
    return "f" + repr(float(value))


_EXACT: dict[type, _Encoder] = {
    type(None): lambda v, p: "N",
    bool: lambda v, p: "T" if v else "F",
    int: _int,
    float: _float,
    str: lambda v, p: f"s{len(v)}:{v}",
    bytes: lambda v, p: "x" + v.hex(),
    bytearray: lambda v, p: "y" + bytearray.hex(v),
    decimal.Decimal: lambda v, p: "m" + decimal.Decimal.__str__(v),
    datetime.datetime: lambda v, p: "t" + datetime.datetime.isoformat(v),
    datetime.date: lambda v, p: "d" + datetime.date.isoformat(v),
    datetime.time: lambda v, p: "h" + datetime.time.isoformat(v),
    datetime.timedelta: lambda v, p: f"D{v.days}.{v.seconds}.{v.microseconds}",
    uuid.UUID: lambda v, p: "u" + v.hex,
    tuple: _seq("(", ")"),
    list: _seq("[", "]"),
    dict: _dict,
    set: _unordered("<", ">"),
    frozenset: _unordered("z<", ">"),
}

#: For subclasses of these: the plain value, read past any overridden __str__/__format__/__int__.
_PLAIN: dict[type, Callable[[Any], Any]] = {
    int: int.__int__,
    float: float.__float__,
    str: str.__str__,
    bytes: bytes.__bytes__,
}


def _custom(method: Callable[[Any], Any]) -> _Encoder:
    def encode_custom(value: Any, path: set[int] | None) -> str:
        path = _enter(value, path)
        text = f"o{_str(_qualname(type(value)))}({encode(method(value), path)})"
        path.discard(id(value))
        return text

    return encode_custom


def _enum(value: enum.Enum, path: set[int] | None) -> str:
    name = value.name
    if name is None:  # a Flag combination without a name (Perm(0)): keyed by its value
        return f"e{_str(_qualname(type(value)))}{encode(value.value, path)}"
    return f"e{_str(_qualname(type(value)))}{_str(name)}"


def _class(value: type, path: set[int] | None) -> str:
    return "c" + _str(_qualname(value))


def _dataclass(cls: type) -> _Encoder:
    """Type name, then every field's name and value in field order."""
    head = f"a{_str(_qualname(cls))}("
    fields = [(f.name, _str(f.name) + "=") for f in dataclasses.fields(cls)]

    def encode_dataclass(value: Any, path: set[int] | None) -> str:
        path = _enter(value, path)
        text = head + ",".join([label + encode(getattr(value, name), path) for name, label in fields]) + ")"
        path.discard(id(value))
        return text

    return encode_dataclass


def _subclass(cls: type, base: type) -> _Encoder:
    """``S<type>(<encoding as base>)``: a subclass never shares a key with its base or a sibling."""
    head = f"S{_str(_qualname(cls))}("
    inner = _ordered_dict if issubclass(cls, collections.OrderedDict) else _EXACT[base]
    plain = _PLAIN.get(base)

    if plain is None:

        def encode_subclass(value: Any, path: set[int] | None) -> str:
            return head + inner(value, path) + ")"

    else:

        def encode_subclass(value: Any, path: set[int] | None) -> str:
            return head + inner(plain(value), path) + ")"

    return encode_subclass


def _find(cls: type) -> _Encoder | None:
    """The encoder for ``cls``: registered types, the protocol, enums, classes, dataclasses, subclasses."""
    for base in cls.__mro__:
        if base in _registered:
            return _custom(_registered[base])
    if hasattr(cls, "__cache_key__"):
        return _custom(lambda v: v.__cache_key__())
    if issubclass(cls, enum.Enum):
        return _enum
    if issubclass(cls, type):
        return _class
    if dataclasses.is_dataclass(cls):
        return _dataclass(cls)
    for base in cls.__mro__[1:]:
        if base in _EXACT:
            return _subclass(cls, base)
    return None


def encoder_for(cls: type) -> _Encoder | None:
    """The encoder for values of exactly ``cls``, or ``None`` if they have no key."""
    try:
        return _cache[cls]
    except KeyError:
        pass
    found = _EXACT.get(cls) or _find(cls)
    if len(_cache) < 4096:
        _cache[cls] = found
    return found


def encode(value: Any, path: set[int] | None = None) -> str:
    """Typed text form of ``value``; raises ``_Reject`` for unsupported values."""
    enc = _EXACT.get(type(value)) or encoder_for(type(value))
    if enc is None:
        raise _Reject(f"values of type {_qualname(type(value))} have no stable cache key")
    return enc(value, path)


def describe_rejection(func_name: str, arg: str, value: Any, reason: str) -> str:
    """The message for an argument that cannot be encoded, with the remedies."""
    cls = type(value)
    return (
        f"{func_name}: argument {arg!r} cannot be part of a cache key: {reason}. "
        f"Pass a value that identifies it instead (an id or a string), define __cache_key__() on "
        f"{cls.__qualname__}, or give the decorator key=<callable returning the key parts>."
    )


def encode_argument(func_name: str, arg: str, value: Any) -> str:
    """``encode(value)``, or :class:`UncacheableArgument` naming ``func_name`` and ``arg``."""
    try:
        return encode(value)
    except _Reject as exc:
        raise UncacheableArgument(describe_rejection(func_name, arg, value, str(exc))) from None
    except UncacheableArgument as exc:  # raised by a registered encoder with its own remedy
        raise UncacheableArgument(f"{func_name}: argument {arg!r}: {exc}") from None
    except RecursionError:  # within MAX_DEPTH, but the caller's stack was already deep
        reason = "it is nested too deeply for the remaining stack; pass a flatter value"
        raise UncacheableArgument(describe_rejection(func_name, arg, value, reason)) from None
    except MemoryError:
        raise
    except Exception as exc:  # a __cache_key__, a registered encoder or a field getter failed
        reason = f"encoding it raised {type(exc).__name__}: {exc}"
        raise UncacheableArgument(describe_rejection(func_name, arg, value, reason)) from exc
