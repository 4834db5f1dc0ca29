"""Cache keys: any int works; cycles, too-deep nesting and failing encoders are named clearly."""

from __future__ import annotations

import dataclasses
import sys

import pytest

import regions
from regions.binding import KeyBuilder


@pytest.fixture
def manager(region_config, make_manager):
    return make_manager({"m": region_config("memory"), "mc": region_config("memcached")})


def g(a, b=None):
    return a


def text(*args):
    return KeyBuilder(g, "t.g").text(args, {})


@pytest.mark.parametrize("region", ["m", "mc"])
def test_huge_ints_are_cacheable(manager, region):
    calls = []

    @manager.region(region)
    def big(n):
        calls.append(n)
        return n % 7

    huge = 10**5000
    assert big(huge) == huge % 7
    assert big(huge) == huge % 7
    assert big(huge + 1) == (huge + 1) % 7
    assert big(-huge) == (-huge) % 7
    assert calls == [huge, huge + 1, -huge]
    assert big.cache_key(huge) != big.cache_key(huge + 1)


def test_huge_int_keys_do_not_depend_on_the_str_conversion_limit():
    huge = 10**5000
    before = text(huge)
    old = sys.get_int_max_str_digits()
    sys.set_int_max_str_digits(0)
    try:
        assert text(huge) == before
    finally:
        sys.set_int_max_str_digits(old)


def test_int_encodings_never_meet():
    values = [10**19, 10**20 - 1, 10**20, 16**20, -(10**20), -(10**20) + 1, 2**64, -(2**64), 10**40]
    texts = [text(v) for v in values]
    assert len(set(texts)) == len(texts), texts
    assert text(10**20) == "I" + format(10**20, "x") + ",N"
    assert text(-(10**20)) == "I-" + format(10**20, "x") + ",N"
    assert text(10**20 - 1) == "i" + "9" * 20 + ",N"


class Exploding:
    def __cache_key__(self):
        raise RuntimeError("boom")


@dataclasses.dataclass
class Node:
    name: str
    child: object = None


@pytest.mark.parametrize("region", ["m", "mc"])
def test_an_unexpected_error_while_encoding_names_function_and_argument(manager, region):
    @manager.region(region)
    def show(a, b=None):
        return a

    calls = (
        lambda: show(1, Exploding()),
        lambda: show(1, b=[Exploding()]),
        lambda: show.cache_key(1, Exploding()),
    )
    for call in calls:
        with pytest.raises(regions.UncacheableArgument) as info:
            call()
        message = str(info.value)
        assert "show" in message and "argument 'b'" in message, message
        assert "RuntimeError: boom" in message
        assert isinstance(info.value.__cause__, RuntimeError)


def test_direct_api_key_error_is_named(manager):
    with pytest.raises(regions.UncacheableArgument, match="region 'mc'.*'key'.*boom"):
        manager.get_region("mc").get(Exploding())


def nested(depth):
    value = []
    for _ in range(depth - 1):
        value = [value]
    return value


@pytest.mark.parametrize("region", ["m", "mc"])
def test_too_deep_nesting_is_not_called_a_cycle(manager, region):
    @manager.region(region)
    def walk(tree):
        return 1

    depth = regions.keys.MAX_DEPTH
    with pytest.raises(regions.UncacheableArgument) as info:
        walk(nested(3000))
    message = str(info.value)
    assert "walk" in message and "'tree'" in message
    assert f"nested more than {depth} levels deep" in message
    assert "flatter" in message and "key=" in message
    assert "contains itself" not in message

    assert walk(nested(depth)) == 1, "exactly MAX_DEPTH levels is fine"
    with pytest.raises(regions.UncacheableArgument, match="levels deep"):
        walk(nested(depth + 1))


def self_list():
    value = [1]
    value.append(value)
    return value


def self_dict():
    value = {}
    value["me"] = [value]
    return value


def self_dataclass():
    node = Node("a")
    node.child = (1, [node])
    return node


class Linked:
    def __init__(self):
        self.other = None

    def __cache_key__(self):
        return ("linked", self.other)


def cache_key_cycle():
    a, b = Linked(), Linked()
    a.other, b.other = b, a
    return a


@pytest.mark.parametrize("region", ["m", "mc"])
@pytest.mark.parametrize("make", [self_list, self_dict, self_dataclass, cache_key_cycle])
def test_a_real_cycle_is_reported_as_containing_itself(manager, region, make):
    @manager.region(region)
    def walk(tree):
        return 1

    with pytest.raises(regions.UncacheableArgument) as info:
        walk(make())
    message = str(info.value)
    assert "walk" in message and "'tree'" in message
    assert "contains itself" in message
    assert "levels deep" not in message


def test_shared_but_acyclic_values_are_fine():
    leaf = [1, 2]
    shared = (leaf, leaf, {"a": leaf}, Node("x", leaf))
    assert text(shared) == text(([1, 2], [1, 2], {"a": [1, 2]}, Node("x", [1, 2])))
    assert text(leaf, leaf) == text([1, 2], [1, 2])
