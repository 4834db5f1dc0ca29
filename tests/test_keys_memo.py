"""The per-function key memo keeps only small arguments alive."""

from __future__ import annotations

import gc
import tracemalloc

import pytest

from regions.binding import KeyBuilder

MB = 1 << 20
LIMIT = 10 * MB


def one_off(i: int) -> bytes:
    return i.to_bytes(4, "big") * (MB // 4)  # 1 MB, different for every i


def retained_after(calls) -> int:
    """Bytes still allocated after ``calls()`` returns (its arguments are gone by then)."""
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        calls()
        gc.collect()
        return tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()


def size(a):
    return len(a)


def test_key_builder_does_not_keep_large_arguments():
    builder = KeyBuilder(size, "t.size")

    def calls():
        for i in range(100):
            builder.text((one_off(i),), {})

    assert retained_after(calls) < LIMIT


def test_key_builder_still_memoises_small_arguments():
    def pair(a, b):
        return a

    builder = KeyBuilder(pair, "t.pair")
    for args in [(1, "abc"), ("x" * 100, b"y" * 50), (None, 10**18)]:
        first = builder.text(args, {})
        assert builder.text(args, {}) is first, f"a repeated small call {args!r} reuses its text"


@pytest.mark.parametrize(("backend", "options"), [("memory", {"max_entries": 2}), ("memcached", {})])
def test_decorated_function_does_not_keep_large_arguments(region_config, make_manager, backend, options):
    manager = make_manager({"r": region_config(backend, OPTIONS=options)})

    @manager.region("r")
    def measure(blob):
        return len(blob)

    assert measure(b"warm") == 4  # connect and bind outside the measurement

    def calls():
        for i in range(100):
            assert measure(one_off(i)) == MB

    assert retained_after(calls) < LIMIT
