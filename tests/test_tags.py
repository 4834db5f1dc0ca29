"""Tags on real backends (memcached, file, memory, request): shared tags, invalidation during a
computation, a second manager standing for another process, errors, refresh, async, file layout."""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from collections import Counter
from pathlib import Path

import pytest

import regions
from regions.backends.file.layout import TAGS_FOLDER
from regions.tags import TagError

BACKENDS = ("memcached", "file", "memory", "request")
SHARED = ("memcached", "file")


def build(make_manager, region_config, backend: str, **kwargs):
    return make_manager({"r": region_config(backend)}, **kwargs)


@pytest.fixture(params=BACKENDS)
def backend(request):
    if request.param == "request":
        with regions.request_scope():
            yield request.param
    else:
        yield request.param


def functions(manager, calls: Counter):
    @manager.region("r", tags=lambda post_id: [f"post:{post_id}", "posts"])
    def card(post_id: int) -> str:
        calls["card", post_id] += 1
        return f"card {post_id} v{calls['card', post_id]}"

    @manager.region("r", tags=["posts"])
    def listing(page: int) -> str:
        calls["listing", page] += 1
        return f"page {page} v{calls['listing', page]}"

    return card, listing


def test_a_tag_invalidates_every_function_carrying_it(make_manager, region_config, backend) -> None:
    calls: Counter = Counter()
    manager = build(make_manager, region_config, backend)
    card, listing = functions(manager, calls)
    assert [card(1), card(2), listing(1)] == ["card 1 v1", "card 2 v1", "page 1 v1"]
    assert [card(1), card(2), listing(1)] == ["card 1 v1", "card 2 v1", "page 1 v1"]  # hits

    assert manager.invalidate_tags("post:1") is True
    assert [card(1), card(2), listing(1)] == ["card 1 v2", "card 2 v1", "page 1 v1"]

    assert manager.invalidate_tags("posts") is True  # shared by both functions
    assert [card(1), card(2), listing(1)] == ["card 1 v3", "card 2 v2", "page 1 v2"]
    assert [card(1), card(2), listing(1)] == ["card 1 v3", "card 2 v2", "page 1 v2"]
    assert manager.invalidate_tags("never-used", "post:99") is True  # nothing carries them
    assert card(1) == "card 1 v3"
    stats = manager["r"].stats()
    assert stats["errors"] == 0 and stats["rejected"] == 0


def test_tags_is_called_once_per_argument_tuple_of_atomic_values(
    make_manager, region_config, backend
) -> None:
    """``tags=`` is a function of the arguments: the names of a plain positional call of
    exact-equality values are kept, so hits do not call it again; keyword calls, other values and
    long strings call it each time; a kept name still follows its tag's invalidation."""
    asked: list[tuple] = []
    manager = build(make_manager, region_config, backend)

    def tags(post_id, lang="en"):
        asked.append((post_id, lang))
        return [f"post:{post_id}"]

    @manager.region("r", tags=tags)
    def card(post_id, lang="en"):
        return f"card {post_id} {lang} {len(asked)}"

    assert [card(1), card(1), card(1)] == ["card 1 en 1"] * 3
    assert asked == [(1, "en")]
    assert [card(1, lang="fr"), card(1, lang="fr")] == ["card 1 fr 2"] * 2
    assert len(asked) == 3  # keyword calls: tags= each time
    assert card((1,)) == card((1,)) and len(asked) == 5  # a tuple argument: each time
    long = "x" * 300
    assert card(long) == card(long) and len(asked) == 7  # a long string is never kept alive
    assert manager.invalidate_tags("post:1") is True
    assert card(1) == "card 1 en 7" and card(1) == "card 1 en 7"  # recomputed once, then a hit
    assert len(asked) == 7


def test_a_tag_invalidated_during_the_computation_leaves_a_stale_entry(
    make_manager, region_config, backend
) -> None:
    calls: Counter = Counter()
    manager = build(make_manager, region_config, backend)

    @manager.region("r", tags=lambda x: [f"x:{x}"])
    def slow(x: int) -> int:
        calls[x] += 1
        if calls[x] == 1:
            manager.invalidate_tags(f"x:{x}")  # the data changed while it was being read
        return calls[x]

    assert slow(1) == 1  # the caller gets its result ...
    assert slow(1) == 2  # ... but it was stored with the versions read before: stale at once
    assert slow(1) == 2


@pytest.mark.parametrize("backend_name", SHARED)
def test_another_manager_on_the_same_storage_sees_the_tag(make_manager, region_config, backend_name) -> None:
    """Two managers with one configuration stand for two processes (nothing in-process is shared)."""
    config = {"r": region_config(backend_name)}
    prefix = "shared" + uuid.uuid4().hex[:8]
    one, two = make_manager(config, key_prefix=prefix), make_manager(config, key_prefix=prefix)
    calls: Counter = Counter()
    card_one, _ = functions(one, calls)
    card_two, _ = functions(two, calls)
    assert card_one(7) == "card 7 v1" and card_two(7) == "card 7 v1"  # two reads the entry one stored
    assert two.invalidate_tags("post:7") is True
    assert card_one(7) == "card 7 v2" and card_two(7) == "card 7 v2"


def test_a_tags_callable_sees_the_call_arguments_and_errors_name_the_function(make_manager) -> None:
    manager = make_manager({"r": {"BACKEND": "memory"}})

    @manager.region("r", tags=lambda a, b=2, **kw: [f"a:{a}", f"b:{b}", *kw])
    def f(a: int, b: int = 2, **kw: int) -> int:
        return a + b

    assert f(1, b=3, z=4) == 4 and f.tags.names((1,), {"b": 3, "z": 4}) == ("a:1", "b:3", "z")

    @manager.region("r", tags=lambda a: "a")
    def string_tags(a: int) -> int:
        return a

    with pytest.raises(TagError, match=r"string_tags: the value returned by tags=.*is not a list"):
        string_tags(1)

    @manager.region("r", tags=lambda a: [3.5])
    def float_tags(a: int) -> int:
        return a

    with pytest.raises(TagError, match=r"float_tags: the value returned by tags=: 3.5 \(float\) is not"):
        float_tags(1)
    with pytest.raises(TagError, match=r"<locals>.g: invalidate_on: .*regions.tags.register"):

        @manager.region("r", invalidate_on=[object()])
        def g() -> None: ...

    with pytest.raises(TagError, match=r"tags: the empty string is not a tag"):

        @manager.region("r", tags=[""])
        def h() -> None: ...


def test_adapters_turn_objects_into_tags(make_manager) -> None:
    class Post:
        def __init__(self, pk: int) -> None:
            self.pk = pk

    regions.tags.register(Post, lambda post: f"post:{post.pk}")
    try:
        manager = make_manager({"r": {"BACKEND": "memory"}})
        calls: Counter = Counter()

        @manager.region("r", tags=lambda pk: [Post(pk)])
        def title(pk: int) -> str:
            calls[pk] += 1
            return f"t{pk}"

        title(1), title(1), title(2)
        assert manager.invalidate_tags(Post(1)) is True
        title(1), title(2)
        assert calls == {1: 2, 2: 1}
    finally:
        regions.tags.unregister(Post)


@pytest.mark.parametrize("backend_name", ("memcached", "file", "memory"))
def test_refresh_stores_with_current_versions(make_manager, region_config, backend_name) -> None:
    calls: Counter = Counter()
    manager = build(make_manager, region_config, backend_name)
    card, _ = functions(manager, calls)
    card(1)
    assert card.refresh(1) == "card 1 v2"
    assert card(1) == "card 1 v2" and calls["card", 1] == 2  # served: stored with current versions
    manager.invalidate_tags("post:1")
    assert card(1) == "card 1 v3"
    assert card.invalidate(1) is True
    assert card(1) == "card 1 v4"


@pytest.mark.parametrize("backend_name", ("memcached", "file", "memory"))
def test_async_functions_take_tags(make_manager, region_config, backend_name) -> None:
    manager = build(make_manager, region_config, backend_name)
    calls: Counter = Counter()

    @manager.region("r", tags=lambda x: [f"x:{x}"])
    async def double(x: int) -> int:
        calls[x] += 1
        return 2 * x

    async def scenario() -> None:
        assert await double(2) == 4 and await double(2) == 4
        manager.invalidate_tags("x:2")
        assert await double(2) == 4
        await double.refresh(2)
        assert await double(2) == 4

    asyncio.run(scenario())
    assert calls[2] == 3


def test_an_expired_entry_is_never_served_stale_after_its_tag_moved(make_manager, region_config) -> None:
    manager = make_manager({"r": region_config("memory", TIMEOUT=0.05, OPTIONS={"stale": 60})})
    calls: Counter = Counter()

    @manager.region("r", tags=["t"])
    def f() -> int:
        calls["f"] += 1
        return calls["f"]

    assert f() == 1
    manager.invalidate_tags("t")
    time.sleep(0.1)  # expired, within stale: without the tag it could be served while recomputed
    assert f() == 2


def test_file_tag_counters_are_no_entries(make_manager, region_config) -> None:
    manager = build(make_manager, region_config, "file")
    calls: Counter = Counter()
    card, listing = functions(manager, calls)
    card(1), listing(1)
    region = manager["r"]
    root = Path(region.location)
    tag_files = sorted((root / TAGS_FOLDER).glob("*.tag"))
    assert len(tag_files) == 2  # post:1 and posts
    assert region.count() == 2
    region.store.cull()
    assert region.clear() is True
    assert sorted((root / TAGS_FOLDER).glob("*.tag")) == tag_files  # clear and cull keep them
    assert region.count() == 0
    manager.invalidate_tags("never-created")
    assert len(list((root / TAGS_FOLDER).glob("*.tag"))) == 2  # a bump creates nothing
    assert not [n for n in os.listdir(root / TAGS_FOLDER) if not n.endswith(".tag")]


def test_a_memcached_counter_that_disappears_is_a_miss(make_manager, region_config) -> None:
    from pymemcache.client.base import Client

    manager = build(make_manager, region_config, "memcached")
    calls: Counter = Counter()
    card, _ = functions(manager, calls)
    assert card(1) == "card 1 v1" == card(1)
    store = manager["r"].store
    host, port = region_config("memcached")["LOCATION"].rsplit(":", 1)
    client = Client((host, int(port)))
    [key] = store.tags.keys(["post:1"])
    assert client.delete(key, noreply=False) is True  # evicted, say: the entry itself is still there
    assert card(1) == "card 1 v2"  # a miss, never the old entry
    assert card(1) == "card 1 v2"  # the miss created the counter again
    [never] = store.tags.keys(["never-created"])
    manager.invalidate_tags("never-created")
    assert client.get(never) is None  # a bump creates no counter
    client.close()


@pytest.mark.parametrize("size", [10, 300_000, 3_000_000])
def test_memcached_tagged_values_of_any_size(make_manager, region_config, size: int) -> None:
    """Read in several pieces (300 KB) or stored in parts (3 MB > item_size): same one get."""
    manager = make_manager({"r": region_config("memcached", OPTIONS={"item_size": 1_000_000})})
    calls: Counter = Counter()

    @manager.region("r", tags=lambda k: [f"k:{k}", "all"])
    def blob(k: int) -> bytes:
        calls[k] += 1
        return bytes([k % 251]) * size + os.urandom(8)

    first = blob(1)
    assert blob(1) == first and blob(1) == first and calls[1] == 1
    manager.invalidate_tags("all")
    assert blob(1) != first and calls[1] == 2
    assert manager["r"].stats()["errors"] == 0


def test_memcached_bumps_many_tags_and_survives_a_damaged_counter(make_manager, region_config) -> None:
    from pymemcache.client.base import Client

    manager = build(make_manager, region_config, "memcached")
    calls: Counter = Counter()

    @manager.region("r", tags=lambda k: [f"k:{k}"])
    def value(k: int) -> int:
        calls[k] += 1
        return calls[k]

    keys = range(1200)  # several batches of pipelined incr commands
    assert [value(k) for k in keys] == [1] * 1200
    host, port = region_config("memcached")["LOCATION"].rsplit(":", 1)
    client = Client((host, int(port)))
    [damaged] = manager["r"].store.tags.keys(["k:5"])
    assert client.set(damaged, b"not a number", noreply=False)  # written by something else
    assert value(5) == 2 and value(5) == 2  # holds no number: a miss, then replaced by a counter
    [damaged] = manager["r"].store.tags.keys(["k:700"])
    assert client.set(damaged, b"not a number either", noreply=False)
    assert manager.invalidate_tags(*(f"k:{k}" for k in keys)) is True  # the others still bumped
    held = client.get(damaged)
    assert held is not None and held.isdigit()  # replaced by a new version: k:700's entries miss
    client.close()
    want = [3 if k == 5 else 2 for k in keys]
    assert [value(k) for k in keys] == want
    assert [value(k) for k in keys] == want
    assert manager["r"].stats()["errors"] == 0


def test_an_unreachable_region_does_not_keep_the_others_from_their_bump(make_manager, dead_address) -> None:
    options = {"timeout": 0.2, "connect_timeout": 0.2, "raise_errors": True}
    manager = make_manager({
        "down": {"BACKEND": "memcached", "LOCATION": dead_address, "OPTIONS": options},
        "local": {"BACKEND": "memory"},
        "quiet": {"BACKEND": "memcached", "LOCATION": dead_address, "OPTIONS": {"timeout": 0.2}},
    })
    calls: Counter = Counter()

    @manager.region("local", tags=["t"])
    def f() -> int:
        calls["f"] += 1
        return calls["f"]

    assert f() == 1 == f()
    with pytest.raises(regions.RegionError):  # raise_errors: the failure reaches the caller ...
        manager.invalidate_tags("t")
    assert f() == 2  # ... after every region had its bump
    manager["down"].raise_errors = False
    assert manager.invalidate_tags("t") is False  # otherwise: False, logged once per region
    assert f() == 3
