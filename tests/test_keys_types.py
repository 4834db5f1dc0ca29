"""Cache keys encode the exact type: builtin subclasses, namedtuples, enums and dataclasses."""

from __future__ import annotations

import collections
import dataclasses
import datetime
import decimal
import enum
import uuid
from typing import NamedTuple

import pytest

import regions
from regions.binding import KeyBuilder


class MyStr(str):
    pass


class OtherStr(str):
    pass


class LoudStr(str):
    """Overrides how it prints: the key must still carry its characters."""

    def __str__(self) -> str:
        return "LOUD"

    def __format__(self, spec: str) -> str:
        return "LOUD"

    def __len__(self) -> int:
        return 0


class UserId(int):
    pass


class Cents(int):
    def __int__(self) -> int:
        return 0

    def __format__(self, spec: str) -> str:
        return "0"


class MyFloat(float):
    pass


class MyBytes(bytes):
    pass


class MyTuple(tuple):
    pass


class MyList(list):
    pass


class MyDict(dict):
    pass


class MyDate(datetime.date):
    pass


class MyDecimal(decimal.Decimal):
    pass


class Point(NamedTuple):
    x: int
    y: int


Size = collections.namedtuple("Size", ["x", "y"])


class Color(enum.Enum):
    RED = 1
    GREEN = 2


class Level(enum.IntEnum):
    ONE = 1
    TWO = 2


class Mode(enum.StrEnum):
    A = "a"
    B = "b"


class Perm(enum.Flag):
    R = 1
    W = 2


@dataclasses.dataclass(frozen=True)
class Pair:
    a: object
    b: object


@dataclasses.dataclass(frozen=True)
class Couple:
    a: object
    b: object


@dataclasses.dataclass
class Swapped:
    b: object
    a: object


def f(a):
    return a


def three(a, b, c):
    return a


def text(value):
    return KeyBuilder(f, "t.f").text((value,), {})


def text3(*args):
    return KeyBuilder(three, "t.three").text(args, {})


DISTINCT = [
    ("x", MyStr("x")),
    (MyStr("x"), OtherStr("x")),
    ("<b>", MyStr("<b>")),
    (5, UserId(5)),
    (UserId(5), Cents(5)),
    (1.5, MyFloat(1.5)),
    (b"x", MyBytes(b"x")),
    ((1, 2), MyTuple((1, 2))),
    ([1, 2], MyList([1, 2])),
    ({"a": 1}, MyDict(a=1)),
    ({"a": 1}, collections.OrderedDict(a=1)),
    ({"a": 1}, collections.defaultdict(int, a=1)),
    (datetime.date(2024, 1, 2), MyDate(2024, 1, 2)),
    (decimal.Decimal("1.5"), MyDecimal("1.5")),
    ((1, 2), Point(1, 2)),
    ((1, 2), Size(1, 2)),
    (Point(1, 2), Size(1, 2)),
    (Point(1, 2), Point(2, 1)),
    (1, Level.ONE),
    (True, Level.ONE),
    (1, Color.RED),
    (Level.ONE, Color.RED),
    ("a", Mode.A),
    (MyStr("a"), Mode.A),
    (UserId(1), Level.ONE),
    (Pair(1, 2), Couple(1, 2)),
    (Pair(1, 2), (1, 2)),
    (Pair(1, 2), Pair(2, 1)),
    (Pair(1, 2), Pair(1, "2")),
    (Pair(1, 2), Pair(True, 2)),
    (Swapped(b=1, a=2), Swapped(b=2, a=1)),
    (collections.OrderedDict(a=1, b=2), collections.OrderedDict(b=2, a=1)),
    (Perm.R, Perm.R | Perm.W),
    (Perm(0), Perm.R),
    ((MyStr("x"),), ("x",)),
    ([UserId(1)], [1]),
    ({MyStr("k"): 1}, {"k": 1}),
    (frozenset({UserId(1)}), frozenset({1})),
]

EQUAL_BUT_DIFFERENT_TYPES = [1, True, 1.0, Level.ONE, UserId(1), decimal.Decimal(1), Cents(1)]


@pytest.mark.parametrize(("first", "second"), DISTINCT, ids=[repr(p) for p in DISTINCT])
def test_values_of_different_types_have_different_keys(first, second):
    assert text(first) != text(second)
    assert text(first) == text(first) and text(second) == text(second)


def test_equal_values_of_different_types_all_have_different_keys():
    texts = [text(v) for v in EQUAL_BUT_DIFFERENT_TYPES]
    assert len(set(texts)) == len(texts), texts


def test_subclass_key_names_the_type_and_the_base_value():
    assert text(MyStr("x")) == f"Ss{len(__name__) + 6}:{__name__}.MyStr(s1:x)"
    assert text(UserId(5)).endswith(".UserId(i5)")
    assert text(Point(1, 2)).endswith(".Point((i1,i2))")


def test_subclass_overriding_str_format_or_int_is_keyed_by_its_real_value():
    assert text(LoudStr("a")) != text(LoudStr("b"))
    assert text(LoudStr("a")).endswith("(s1:a)")
    assert text(Cents(5)) != text(Cents(6))
    assert text(Cents(5)).endswith("(i5)")


def test_exact_builtin_types_keep_their_encoding():
    assert text3(1, "abc", None) == "i1,s3:abc,N"
    assert text3(None, b"\x01", -7) == "N,x01,i-7"
    assert text3(True, False, 1.5) == "T,F,f1.5"
    assert text3((1, "a"), [None], {"k": 2}) == "(i1,s1:a),[N],{s1:k=i2}"
    assert text(10**19) == "i10000000000000000000"
    assert text(-(2**64)) == "i-18446744073709551616"


def test_enums_keep_their_enum_encoding():
    assert text(Level.ONE) == f"es{len(__name__) + 6}:{__name__}.Levels3:ONE"
    assert text(Mode.A).endswith(".Modes1:A")
    assert text(Color.RED) != text(Color.GREEN)


def test_dataclass_instances_are_keyed_by_type_fields_and_values():
    assert text(Pair(1, 2)) == text(Pair(1, 2))
    assert text(Pair(1, [2])) == text(Pair(1, [2]))
    assert text(Pair(1, 2)).endswith(".Pair(s1:a=i1,s1:b=i2)")
    assert text(Swapped(b=1, a=2)).endswith(".Swapped(s1:b=i1,s1:a=i2)"), "fields in field order"


def test_dataclass_with_an_unsupported_field_names_the_argument():
    with pytest.raises(regions.UncacheableArgument, match=r"t\.f: argument 'a'.*object"):
        text(Pair(1, object()))


def test_dataclass_class_itself_is_keyed_as_a_class():
    assert text(Pair) != text(Pair(1, 2))
    assert text(Pair).startswith("c")


@pytest.fixture
def manager(tmp_path):
    manager = regions.CacheManager(
        {"m": {"BACKEND": "memory"}, "f": {"BACKEND": "file", "LOCATION": str(tmp_path)}},
        key_prefix="keys" + uuid.uuid4().hex[:8],
    )
    yield manager
    manager.close()


@pytest.mark.parametrize("region", ["m", "f"])
def test_every_backend_keeps_a_str_subclass_apart_from_str(manager, region):
    calls = []

    @manager.region(region)
    def render(value):
        calls.append(value)
        return ("rendered", type(value).__name__, str.__str__(value))

    assert render(MyStr("<b>")) == ("rendered", "MyStr", "<b>")
    assert render("<b>") == ("rendered", "str", "<b>"), "a plain str got the subclass's cached result"
    assert render(MyStr("<b>")) == ("rendered", "MyStr", "<b>")
    assert render("<b>") == ("rendered", "str", "<b>")
    assert [type(c) for c in calls] == [MyStr, str]


@pytest.mark.parametrize("region", ["m", "f"])
def test_every_backend_keeps_int_subclass_namedtuple_and_dataclass_apart(manager, region):
    calls = []

    @manager.region(region)
    def g(value):
        calls.append(value)
        return type(value).__name__

    for value in [5, UserId(5), (1, 2), Point(1, 2), Size(1, 2), Pair(1, 2), Level.ONE, 1]:
        assert g(value) == type(value).__name__
    assert g(UserId(5)) == "UserId" and g(Point(1, 2)) == "Point" and g(Pair(1, 2)) == "Pair"
    assert len(calls) == 8, "each of the eight values computed exactly once"
