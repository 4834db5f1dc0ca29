"""Regions sharing one memcached server keep their entries, keys and clears apart.

What each test guards (issue #1):

* ``test_two_regions_never_share_keys_or_values`` (hypothesis): one function body cached in regions
  ``a`` and ``b`` of one manager on one server (same module, same ``__qualname__``, same
  key_prefix). Whatever happens to ``a`` (clear, invalidate_all, invalidate(x), refresh(x)), ``a``'s
  and ``b``'s cache keys never meet and neither region ever returns the other's value. The bug:
  after a few ``a.clear()`` calls ``fa.cache_key(1) == fb.cache_key(1)`` and ``fa(1)`` returned
  ``b``'s value.
* ``test_clearing_region_a_many_times_never_reaches_region_b``: the same, deterministically.
* ``test_invalidate_all_in_region_a_keeps_region_b_entries``: ``fa.invalidate_all()`` drops only
  ``a``'s entries of the function.
* ``test_prefix_and_region_name_joined_alike_do_not_share_entries``: two managers with different
  key_prefix whose ``prefix:v1:~name`` namespaces join to the same text never see each other's
  entries, however often one is cleared.
* ``test_clear_of_a_region_whose_identity_joins_alike_spares_the_other``: ``key_prefix "K" +
  KEY_PREFIX "y:~r" + name "n"`` and ``key_prefix "K:y" + name "r:~n"`` both join to ``K:y:~r:~n``;
  clearing one must not drop the other's entries.
"""

from __future__ import annotations

import itertools
import time
import uuid

import pytest
from hypothesis import HealthCheck, Phase, example, given, settings
from hypothesis import strategies as st

import regions

_serial = itertools.count()


def _body(tag: str):
    """A fresh copy of one function body: every copy has this module and the same __qualname__."""

    def compute(x):
        return (tag, x, next(_serial))

    return compute


def pair_on_one_server(address: str, key_prefix: str | None = None):
    """Manager with regions ``a`` and ``b`` on ``address``, and one function body cached in each."""
    manager = regions.CacheManager(
        {
            "a": {"BACKEND": "memcached", "LOCATION": address, "TIMEOUT": 600},
            "b": {"BACKEND": "memcached", "LOCATION": address, "TIMEOUT": 600},
        },
        key_prefix=key_prefix or "id" + uuid.uuid4().hex[:10],
    )
    body_a, body_b = _body("a"), _body("b")
    assert (body_a.__module__, body_a.__qualname__) == (body_b.__module__, body_b.__qualname__)
    fa = manager.region("a")(body_a)
    fb = manager.region("b")(body_b)
    return manager, fa, fb


def check_apart(fa, fb, xs=range(3), same_storage: bool = True) -> None:
    """a's and b's keys differ (where both regions share one storage) and values never cross."""
    for x in xs:
        if same_storage:
            ka, kb = fa.cache_key(x), fb.cache_key(x)
            assert ka != kb, f"regions a and b share the memcached key {ka!r}"
        va, vb = fa(x), fb(x)
        assert va[:2] == ("a", x), f"fa({x}) returned {va!r}: region b's value"
        assert vb[:2] == ("b", x), f"fb({x}) returned {vb!r}: region a's value"


OPS = st.one_of(
    st.just(("clear",)),
    st.just(("invalidate_all",)),
    st.tuples(st.just("invalidate"), st.integers(0, 2)),
    st.tuples(st.just("refresh"), st.integers(0, 2)),
)


@settings(
    max_examples=30,
    deadline=None,
    database=None,
    phases=(Phase.explicit, Phase.generate),  # no shrinking: a failure is reported as found
    suppress_health_check=[HealthCheck.too_slow],
)
@given(ops=st.lists(OPS, max_size=40))
@example(ops=[("clear",)] * 40)
def test_two_regions_never_share_keys_or_values(memcached_server, ops):
    manager, fa, fb = pair_on_one_server(memcached_server)
    try:
        check_apart(fa, fb)  # a's counters are made first, then b's
        for op in ops:
            if op[0] == "clear":
                manager["a"].clear()
            elif op[0] == "invalidate_all":
                fa.invalidate_all()
            elif op[0] == "invalidate":
                fa.invalidate(op[1])
            else:
                assert fa.refresh(op[1])[:2] == ("a", op[1])
            check_apart(fa, fb)
    finally:
        manager.close()


def test_clearing_region_a_many_times_never_reaches_region_b(memcached_server):
    manager, fa, fb = pair_on_one_server(memcached_server)
    try:
        check_apart(fa, fb, xs=[1])
        for _ in range(300):
            manager["a"].clear()
            check_apart(fa, fb, xs=[1])
    finally:
        manager.close()


def test_invalidate_all_in_region_a_keeps_region_b_entries(memcached_server):
    manager, fa, fb = pair_on_one_server(memcached_server)
    try:
        first_b = fb(1)
        first_a = fa(1)
        fa.invalidate_all()
        manager["a"].clear()
        time.sleep(1.2)  # past the 1 s in which a process may still use counters it read before
        assert fb(1) == first_b, "region a's invalidate_all() / clear() dropped region b's entry"
        assert fa(1) != first_a
    finally:
        manager.close()


def test_prefix_and_region_name_joined_alike_do_not_share_entries(memcached_server, make_manager):
    """``K`` + region ``n:v1:~m`` and ``K:v1:~n`` + region ``m``: the naive join of both direct
    namespaces is ``K:v1:~n:v1:~m``."""
    k = "j" + uuid.uuid4().hex[:8]
    conf = {"BACKEND": "memcached", "LOCATION": memcached_server, "TIMEOUT": 600}
    one = make_manager({"n:v1:~m": dict(conf)}, key_prefix=k)["n:v1:~m"]
    two = make_manager({"m": dict(conf)}, key_prefix=f"{k}:v1:~n")["m"]
    one.set("k", "one's")  # one's counters are made first, then two's
    two.set("j", "two's")
    for i in range(300):
        assert two.get("k") is None, f"after {i} clears, manager two read manager one's entry"
        assert one.get("j") is None, f"after {i} clears, manager one read manager two's entry"
        one.clear()
        one.set("k", "one's")
        assert one.get("k") == "one's"
    assert two.get("j") == "two's"


def test_clear_of_a_region_whose_identity_joins_alike_spares_the_other(memcached_server, make_manager):
    k = "c" + uuid.uuid4().hex[:8]
    conf = {"BACKEND": "memcached", "LOCATION": memcached_server, "TIMEOUT": 600}
    one = make_manager({"n": {**conf, "KEY_PREFIX": "y:~r"}}, key_prefix=k)["n"]
    two = make_manager({"r:~n": dict(conf)}, key_prefix=f"{k}:y")["r:~n"]
    one.set("k", "one's")
    two.set("k", "two's")
    assert (one.get("k"), two.get("k")) == ("one's", "two's")
    two.clear()
    time.sleep(1.2)  # past the 1 s in which a process may still use counters it read before
    assert two.get("k") is None
    assert one.get("k") == "one's", "clearing manager two's region dropped manager one's entries"


@pytest.mark.parametrize("backend", ["memory", "file"])
def test_two_regions_with_one_function_body_stay_apart_on_other_backends(
    backend, region_config, make_manager
):
    """The same property, for the backends where each region has its own storage (a memory
    region's cache_key is ``(namespace, key)`` inside its own dict, so keys may be equal there)."""
    manager = make_manager({"a": region_config(backend), "b": region_config(backend)})
    fa = manager.region("a")(_body("a"))
    fb = manager.region("b")(_body("b"))
    check_apart(fa, fb, same_storage=False)
    for _ in range(5):
        manager["a"].clear()
        fa.invalidate_all()
        check_apart(fa, fb, same_storage=False)
