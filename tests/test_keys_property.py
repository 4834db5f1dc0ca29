"""Cache keys: property tests for unambiguity and memcached safety, plus namespace and rejection rules."""

from __future__ import annotations

import collections
import copy
import dataclasses
import datetime
import decimal
import enum
import itertools
import math
import uuid
from typing import NamedTuple

import pytest
from django.utils.safestring import SafeString
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import regions

# ---------------------------------------------------------------------------------------------
# Types whose values equal (or look like) values of other types


class MyStr(str):
    pass


class UserId(int):
    pass


class MyTuple(tuple):
    pass


class Point(NamedTuple):
    x: object
    y: object


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


@dataclasses.dataclass(frozen=True)
class Pair:
    a: object
    b: object


@dataclasses.dataclass(frozen=True)
class Couple:
    a: object
    b: object


@dataclasses.dataclass
class Box:
    content: object


#: Equal to each other (``==``) or printing alike, but of different types: never one key (all hashable).
LOOKALIKES = [
    1, True, 1.0, Level.ONE, UserId(1), Color.RED, decimal.Decimal(1),
    0, False, 0.0, UserId(0),
    "a", MyStr("a"), SafeString("a"), Mode.A, b"a",
    "<b>", MyStr("<b>"), SafeString("<b>"),
    (1, 2), Point(1, 2), Size(1, 2), MyTuple((1, 2)), Pair(1, 2), Couple(1, 2),
]

# ---------------------------------------------------------------------------------------------
# Strategies over every supported argument type

subclass_atoms = st.one_of(
    st.text(max_size=4).map(MyStr),
    st.text(max_size=4).map(SafeString),
    st.integers(min_value=-3, max_value=3).map(UserId),
    st.sampled_from(Color),
    st.sampled_from(Level),
    st.sampled_from(Mode),
    st.sampled_from(LOOKALIKES),
)

atoms = st.one_of(
    subclass_atoms,
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=False),
    st.text(),
    st.binary(),
    st.dates(),
    st.datetimes(timezones=st.sampled_from([None, datetime.UTC])),
    st.decimals(allow_nan=False, allow_infinity=False),
    st.uuids(),
)



def records(inner):
    """Namedtuples, tuple subclasses and frozen dataclasses over ``inner`` (hashable if it is)."""
    return st.one_of(
        st.builds(Point, inner, inner),
        st.builds(Size, inner, inner),
        st.lists(inner, max_size=3).map(MyTuple),
        st.builds(Pair, inner, inner),
        st.builds(Couple, inner, inner),
    )


hashable_values = st.recursive(
    atoms,
    lambda inner: st.tuples(inner, inner) | st.lists(inner, max_size=3).map(tuple) | records(inner),
    max_leaves=8,
)

values = st.recursive(
    atoms,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4).map(tuple),
        st.lists(inner, max_size=4),
        st.dictionaries(hashable_values, inner, max_size=3),
        st.frozensets(hashable_values, max_size=3),
        records(inner),
        st.builds(Box, inner),
    ),
    max_leaves=12,
)

arg_lists = st.lists(values, max_size=4).map(tuple)


def canonical(value):
    """Type-aware identity: two argument lists are "the same call" iff their canonical forms are equal.

    Same type and equal value (so 1 / 1.0 / True / '1' / b'1' / Level.ONE / UserId(1) are all different,
    and so are a tuple, a namedtuple and a dataclass with the same items; 0.0 and -0.0, or two dicts in a
    different order, are the same and may share a key).
    """
    kind = f"{type(value).__module__}.{type(value).__qualname__}"
    if dataclasses.is_dataclass(value):
        return (kind, tuple(canonical(getattr(value, f.name)) for f in dataclasses.fields(value)))
    if isinstance(value, enum.Enum):
        return (kind, value.name)
    if isinstance(value, (tuple, list)):
        return (kind, tuple(canonical(v) for v in value))
    if isinstance(value, dict):
        return (kind, frozenset((canonical(k), canonical(v)) for k, v in value.items()))
    if isinstance(value, frozenset):
        return (kind, frozenset(canonical(v) for v in value))
    if isinstance(value, float):
        return (kind, 0.0 if value == 0 else value)
    if isinstance(value, datetime.datetime):
        return (kind, value.tzinfo is not None, value)  # naive == aware is False, never an error
    return (kind, value)


@pytest.fixture(params=["memory", "memcached"])
def keyed(request, region_config, make_manager):
    """A ``def f(*args)`` cached in a memory or a memcached region, to take keys from."""
    manager = make_manager({"r": region_config(request.param)})

    @manager.region("r")
    def f(*args):
        return args

    return f


SETTINGS = settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


@SETTINGS
@given(batch=st.lists(arg_lists, min_size=2, max_size=8))
def test_distinct_argument_lists_never_share_a_key(keyed, batch):
    by_key: dict = {}
    for args in batch:
        key = keyed.cache_key(*args)
        assert key == keyed.cache_key(*copy.deepcopy(args)), "key is not deterministic"
        ident = canonical(args)
        other = by_key.setdefault(key, (ident, args))
        assert other[0] == ident, f"{other[1]!r} and {args!r} share the key {key!r}"


NEAR_MISSES = [
    ((1,), (True,)),
    ((0,), (False,)),
    ((1,), (1.0,)),
    ((1,), ("1",)),
    (("1",), (b"1",)),
    ((None,), ("None",)),
    ((None,), ()),
    (("",), ()),
    (("",), (b"",)),
    (((1, 2),), ([1, 2],)),
    (((1, 2),), (1, 2)),
    (((),), ((None,),)),
    (("a b",), ("a", "b")),
    (("a,b",), ("a", "b")),
    (("a", "b,c"), ("a,b", "c")),
    (("s1:a",), ("a",)),
    (("i1",), (1,)),
    (("x00",), (b"\x00",)),
    (({"a": 1},), ([("a", 1)],)),
    (({"a": 1, "b": 2},), ({"a": "1", "b": 2},)),
    (({"a=1": "b"},), ({"a": "1=b"},)),
    ((frozenset({1}),), ((1,),)),
    ((frozenset(),), ({},)),
    ((frozenset(),), ((),)),
    ((decimal.Decimal("1"),), (1,)),
    ((decimal.Decimal("1.5"),), (1.5,)),
    ((datetime.date(2024, 1, 2),), (datetime.datetime(2024, 1, 2),)),
    ((datetime.date(2024, 1, 2),), ("2024-01-02",)),
    ((uuid.UUID(int=1),), (uuid.UUID(int=1).hex,)),
    ((math.inf,), ("inf",)),
    ((float("nan"),), ("nan",)),
    (("é",), ("e\u0301",)),
    ((b"\xff",), ("\xff",)),
    (("x",), (MyStr("x"),)),
    (("<b>",), (SafeString("<b>"),)),
    ((MyStr("<b>"),), (SafeString("<b>"),)),
    ((5,), (UserId(5),)),
    (((1, 2),), (Point(1, 2),)),
    (((1, 2),), (Size(1, 2),)),
    ((Point(1, 2),), (Size(1, 2),)),
    (((1, 2),), (MyTuple((1, 2)),)),
    ((1,), (Level.ONE,)),
    (("a",), (Mode.A,)),
    ((Pair(1, 2),), (Couple(1, 2),)),
    ((Pair(1, 2),), ((1, 2),)),
    ((Pair(1, 2),), (Point(1, 2),)),
    (([MyStr("x")],), (["x"],)),
    (({MyStr("k"): 1},), ({"k": 1},)),
]


@pytest.mark.parametrize(("first", "second"), NEAR_MISSES, ids=[repr(p) for p in NEAR_MISSES])
def test_near_misses_have_distinct_keys(keyed, first, second):
    assert keyed.cache_key(*first) != keyed.cache_key(*second)


def test_lookalikes_all_have_distinct_keys(keyed):
    by_key = {}
    for value in [*LOOKALIKES, [1, 2], Box((1, 2)), Box([1, 2])]:
        key = keyed.cache_key(value)
        assert key not in by_key, f"{by_key.get(key)!r} and {value!r} share the key {key!r}"
        by_key[key] = value


EQUAL_ONES = [1, True, 1.0, Level.ONE, UserId(1)]


@pytest.mark.parametrize(("first", "second"), list(itertools.combinations(EQUAL_ONES, 2)))
def test_equal_values_of_different_types_have_distinct_keys(keyed, first, second):
    assert first == second
    assert keyed.cache_key(first) != keyed.cache_key(second)
    assert keyed.cache_key([first]) != keyed.cache_key([second])
    assert keyed.cache_key(Box(first)) != keyed.cache_key(Box(second))


# ---------------------------------------------------------------------------------------------
# memcached keys: <= 250 bytes, printable ASCII, no whitespace or control bytes

def assert_memcached_safe(key):
    raw = key.encode("utf-8") if isinstance(key, str) else key
    assert len(raw) <= 250, f"{len(raw)} bytes: {key!r}"
    assert all(0x21 <= b <= 0x7E for b in raw), f"non-printable or whitespace byte in {key!r}"


@pytest.fixture
def memcached_manager(region_config, make_manager):
    return make_manager({"mc": region_config("memcached")})


nasty_text = st.one_of(
    st.text(min_size=200, max_size=2000),
    st.text(alphabet=" \t\r\n\x00\x7f\x85\u2028", min_size=1, max_size=300),
    st.text(alphabet="鍵世界🔑é", min_size=1, max_size=300),
    st.text(),
)


@SETTINGS
@given(args=st.lists(st.one_of(values, nasty_text), max_size=4))
def test_memcached_keys_are_always_valid(memcached_manager, args):
    @memcached_manager.region("mc")
    def f(*a):
        return a

    assert_memcached_safe(f.cache_key(*args))


@pytest.mark.parametrize(
    "arg",
    ["x" * 300, " " * 116, "鍵" * 30, "a b", "tab\tnew\nline", "\x00\x01", "é", "x" * 250, "", "#"],
    ids=["300-chars", "116-spaces", "30-cjk", "space", "whitespace", "control", "accent", "250", "empty",
         "hash"],
)
def test_memcached_key_of_awkward_strings(memcached_manager, arg):
    @memcached_manager.region("mc")
    def f(a):
        return a

    assert_memcached_safe(f.cache_key(arg))
    assert f.cache_key(arg) != f.cache_key(arg + " ")


def test_memcached_key_with_long_names_and_prefix(region_config, make_manager):
    manager = make_manager(
        {"mc": region_config("memcached", KEY_PREFIX="p" * 200, VERSION=123456)}, key_prefix="m" * 100
    )

    def build():
        def f(a):
            return a

        f.__qualname__ = "Very" * 80 + ".функция"
        return manager.region("mc")(f)

    f = build()
    for arg in ["short", "x" * 500, "鍵 " * 40]:
        assert_memcached_safe(f.cache_key(arg))
    assert f.cache_key("a") != f.cache_key("b")


# ---------------------------------------------------------------------------------------------
# Namespaces and rejections


def module_level(a):
    return a


class Thing:
    def __init__(self, ident):
        self.ident = ident

    def __cache_key__(self):
        return ("Thing", self.ident)

    def method(self, x):
        return (self.ident, x)


@pytest.fixture
def mem_manager(region_config, make_manager):
    return make_manager({"m": region_config("memory"), "mc": region_config("memcached")})


def test_namespace_is_module_and_qualname_without_path(mem_manager):
    region = "mc"  # memcached keys are text holding the namespace; in-process stores keep it apart
    f = mem_manager.region(region)(module_level)
    key = str(f.cache_key(1))
    assert f"{module_level.__module__}.module_level" in key
    assert __file__ not in key and "/" not in key and ".py" not in key

    m = mem_manager.region(region)(Thing.method)
    assert f"{Thing.__module__}.Thing.method" in str(m.cache_key(Thing(1), 2))


@pytest.mark.parametrize("region", ["m", "mc"])
def test_self_is_part_of_the_key_via_cache_key(mem_manager, region):
    calls = []

    class Account:
        def __init__(self, ident):
            self.ident = ident

        def __cache_key__(self):
            return self.ident

        @mem_manager.region(region)
        def balance(self):
            calls.append(self.ident)
            return self.ident * 10

    a1, a1_again, a2 = Account(1), Account(1), Account(2)
    assert Account.balance.cache_key(a1) == Account.balance.cache_key(a1_again)
    assert Account.balance.cache_key(a1) != Account.balance.cache_key(a2)
    assert a1.balance() == 10 and a1_again.balance() == 10 and a2.balance() == 20
    assert calls == [1, 2]


class Opaque:
    pass


@pytest.mark.parametrize("region", ["m", "mc"])
@pytest.mark.parametrize("bad", [lambda: 1, object(), Opaque(), iter([1]), [object()], {"k": Opaque()}],
                         ids=["lambda", "object", "opaque", "iterator", "nested-list", "nested-dict"])
def test_unsupported_arguments_are_rejected_by_name(mem_manager, region, bad):
    calls = []

    @mem_manager.region(region)
    def render(template, callback=None):
        calls.append(1)
        return template

    with pytest.raises(regions.UncacheableArgument) as info:
        render("t", callback=bad)
    assert isinstance(info.value, TypeError)
    message = str(info.value)
    assert "'callback'" in message
    assert "render" in message
    assert "__cache_key__" in message or "key=" in message  # a remedy is named
    with pytest.raises(regions.UncacheableArgument, match="'template'"):
        render(bad)
    with pytest.raises(regions.UncacheableArgument):
        render.cache_key("t", bad)
    assert calls == []


def test_method_without_cache_key_rejects_self(mem_manager):
    class Plain:
        @mem_manager.region("m")
        def compute(self):
            return 1

    with pytest.raises(regions.UncacheableArgument, match="'self'"):
        Plain().compute()


def test_registered_encoder(mem_manager):
    class Point:
        def __init__(self, x, y):
            self.x, self.y = x, y

    regions.keys.register(Point, lambda p: (p.x, p.y))
    try:

        @mem_manager.region("mc")
        def norm(p):
            return abs(p.x) + abs(p.y)

        assert norm.cache_key(Point(1, 2)) == norm.cache_key(Point(1, 2))
        assert norm.cache_key(Point(1, 2)) != norm.cache_key(Point(2, 1))
        assert norm.cache_key(Point(1, 2)) != norm.cache_key((1, 2))
    finally:
        regions.keys.unregister(Point)
    with pytest.raises(regions.UncacheableArgument):
        norm.cache_key(Point(1, 2))


# ---------------------------------------------------------------------------------------------
# The decorator's inline hit (regions.decorator): for all-positional calls of exact int / str /
# bytes / None values its key is the argument tuple itself. Calls, not cache_key(): every value
# a function returns names the arguments it was computed for, so an entry served for other
# arguments (an inline key that collides, or differs from the general path's) is a failure.

inline_atoms = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-3, max_value=3), st.integers(),
    st.floats(allow_nan=False, min_value=-3, max_value=3), st.text(max_size=3), st.binary(max_size=3),
    st.sampled_from(LOOKALIKES), st.integers(min_value=-3, max_value=3).map(UserId),
    st.text(max_size=3).map(MyStr),
)


@pytest.fixture(params=["memory", "request"])
def inline_functions(request, region_config, make_manager):
    """Functions of 1, 2 and 3 parameters (the inline hit's two branches) in a memory or request
    region, each returning the canonical form of its arguments, with its count of computations."""
    manager = make_manager({"r": region_config(request.param)})
    computed: collections.Counter = collections.Counter()

    @manager.region("r")
    def one(a):
        computed[1] += 1
        return canonical((a,))

    @manager.region("r")
    def two(a, b):
        computed[2] += 1
        return canonical((a, b))

    @manager.region("r")
    def three(a, b, c=None):
        computed[3] += 1
        return canonical((a, b, c))

    with regions.request_scope():
        yield {1: one, 2: two, 3: three}, computed, manager["r"]


@SETTINGS
@given(batch=st.lists(st.lists(inline_atoms, min_size=1, max_size=3).map(tuple), min_size=2, max_size=8))
def test_inline_hits_serve_the_entry_of_their_own_arguments(inline_functions, batch):
    funcs, computed, region = inline_functions
    for args in batch:  # stored (or already there), then read back by the inline hit
        func = funcs[len(args)]
        assert func(*args) == canonical(args)
        before = computed[len(args)]
        assert func(*args) == canonical(args), f"{args!r} was served another call's entry"
        assert computed[len(args)] == before, f"{args!r} was not a hit the second time"
    for args in reversed(batch):  # every entry still answers for its own arguments only
        assert funcs[len(args)](*args) == canonical(args)
    if len(batch[0]) == 3:  # a default filled in by the general path is the same key inline
        assert funcs[3](*batch[0][:2]) == canonical((*batch[0][:2], None))
        assert funcs[3](*batch[0][:2], None) == canonical((*batch[0][:2], None))


def test_inline_hits_of_equal_values_of_other_types_are_misses(inline_functions):
    funcs, computed, _region = inline_functions
    for value in EQUAL_ONES:
        assert funcs[1](value) == canonical((value,))
    assert computed[1] == len(EQUAL_ONES), "equal values of other types shared an entry"
    for value in EQUAL_ONES:
        assert funcs[1](value) == canonical((value,))
    assert computed[1] == len(EQUAL_ONES)
