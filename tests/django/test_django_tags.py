"""Model-save invalidation with real models in the test database and the session's real memcached.

``transaction=True``: the tests commit for real (a TestCase's wrapping transaction would never run
the ``on_commit`` callbacks that invalidate).
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest
from django.db import transaction

import regions
from regions.tags import TagError
from tests.django.tagapp.models import BlogPost, FeaturedPost, Topic

pytestmark = pytest.mark.django_db(transaction=True)
CALLS: Counter[str] = Counter()


@regions.region("functions", invalidate_on=[BlogPost])
def post_titles() -> list[str]:
    CALLS["titles"] += 1
    return sorted(BlogPost.objects.values_list("title", flat=True))


@regions.region("functions", tags=lambda post: [post])
def post_card(post: BlogPost) -> dict[str, Any]:
    CALLS[f"card:{post.pk}"] += 1
    fresh = BlogPost.objects.get(pk=post.pk)
    return {"title": fresh.title, "topics": sorted(t.name for t in fresh.topics.all())}


@regions.region("files", tags=lambda topic_id: [Topic(pk=topic_id)])
def topic_posts(topic_id: int) -> list[str]:
    CALLS[f"topic:{topic_id}"] += 1
    return sorted(p.title for p in Topic.objects.get(pk=topic_id).posts.all())


@regions.region("functions", tags=lambda x: [object()])
def badly_tagged(x: int) -> int:
    return x


@pytest.fixture(autouse=True)
def fresh_counts() -> None:
    CALLS.clear()


def test_a_save_of_any_instance_invalidates_invalidate_on() -> None:
    BlogPost.objects.create(title="first")
    assert post_titles() == ["first"] and post_titles() == ["first"]
    assert CALLS["titles"] == 1
    BlogPost.objects.create(title="second")  # a new row: post_save, committed at once
    assert post_titles() == ["first", "second"]
    assert CALLS["titles"] == 2
    FeaturedPost.objects.filter(title="first").get().save()  # through a proxy: the same model's tag
    post_titles()
    assert CALLS["titles"] == 3


def test_an_instance_tag_is_invalidated_by_that_instance_only() -> None:
    one, two = BlogPost.objects.create(title="one"), BlogPost.objects.create(title="two")
    assert post_card(one)["title"] == "one" and post_card(two)["title"] == "two"
    two.title = "two, edited"
    two.save()
    assert post_card(one)["title"] == "one" and CALLS[f"card:{one.pk}"] == 1  # untouched
    assert post_card(two)["title"] == "two, edited" and CALLS[f"card:{two.pk}"] == 2


def test_delete_invalidates() -> None:
    post = BlogPost.objects.create(title="doomed")
    BlogPost.objects.create(title="kept")
    assert post_titles() == ["doomed", "kept"]
    pk = post.pk
    post.delete()
    assert post_titles() == ["kept"]
    assert CALLS["titles"] == 2
    BlogPost.objects.filter(title="kept").delete()  # a queryset delete sends post_delete too
    assert post_titles() == []
    assert pk is not None


def test_m2m_changes_invalidate_both_sides() -> None:
    post = BlogPost.objects.create(title="p")
    tea, cups = Topic.objects.create(name="tea"), Topic.objects.create(name="cups")
    assert post_card(post)["topics"] == [] and topic_posts(tea.pk) == []
    post.topics.add(tea)  # forward side
    assert post_card(post)["topics"] == ["tea"]
    assert topic_posts(tea.pk) == ["p"]  # the other side's instance tag too
    cups.posts.add(post)  # reverse side
    assert post_card(post)["topics"] == ["cups", "tea"]
    post.topics.remove(tea)
    assert post_card(post)["topics"] == ["cups"] and topic_posts(tea.pk) == []
    assert topic_posts(cups.pk) == ["p"]
    post.topics.clear()  # the unlinked topics' own tags too, though m2m_changed names none of them
    assert post_card(post)["topics"] == [] and topic_posts(cups.pk) == []
    assert CALLS[f"card:{post.pk}"] == 5 and CALLS[f"topic:{tea.pk}"] == 3
    assert CALLS[f"topic:{cups.pk}"] == 2


def test_a_rolled_back_transaction_invalidates_nothing() -> None:
    post = BlogPost.objects.create(title="before")
    assert post_card(post)["title"] == "before"
    with pytest.raises(RuntimeError), transaction.atomic():
        post.title = "never committed"
        post.save()
        # this thread sees its own uncommitted row: computed, neither read from nor stored in the cache
        assert post_card(post)["title"] == "never committed"
        assert post_titles() == ["never committed"]
        raise RuntimeError("roll back")
    calls = dict(CALLS)
    assert post_card(post)["title"] == "before"  # the entry cached before the transaction
    assert post_titles() == ["before"]  # computed: it was never cached (the one inside was not stored)
    assert CALLS[f"card:{post.pk}"] == calls[f"card:{post.pk}"]
    assert CALLS["titles"] == calls["titles"] + 1
    assert post_titles() == ["before"] and CALLS["titles"] == calls["titles"] + 1


def test_the_next_transaction_of_the_thread_uses_the_cache_again() -> None:
    post = BlogPost.objects.create(title="t")
    with transaction.atomic():  # as with ATOMIC_REQUESTS: one transaction per request
        post.save()
        post_card(post)  # computed, not cached: this transaction changed the post
    with transaction.atomic():  # the next request, same thread: its cache is right again
        assert post_card(post)["title"] == "t"
        calls = CALLS[f"card:{post.pk}"]
        assert post_card(post)["title"] == "t" and CALLS[f"card:{post.pk}"] == calls


def test_a_committed_transaction_invalidates_at_commit() -> None:
    post = BlogPost.objects.create(title="old")
    assert post_card(post)["title"] == "old"
    with transaction.atomic():
        post.title = "new"
        post.save()
        topic = Topic.objects.create(name="t")
        post.topics.add(topic)
    assert post_card(post) == {"title": "new", "topics": ["t"]}
    assert post_card(post) == {"title": "new", "topics": ["t"]}
    assert CALLS[f"card:{post.pk}"] == 2


def test_tags_reach_every_region_and_work_by_hand() -> None:
    post = BlogPost.objects.create(title="x")
    tea = Topic.objects.create(name="tea")
    post_card(post), topic_posts(tea.pk)
    assert regions.invalidate_tags(tea, BlogPost) is True  # objects become tags by the adapters
    post_card(post), topic_posts(tea.pk)
    assert CALLS[f"card:{post.pk}"] == 1  # carries "tagapp.blogpost:<pk>", not the model's tag
    assert CALLS[f"topic:{tea.pk}"] == 2
    regions.invalidate_tags(f"tagapp.blogpost:{post.pk}")
    post_card(post)
    assert CALLS[f"card:{post.pk}"] == 2


def test_many_rows_changed_in_one_transaction() -> None:
    posts = [BlogPost.objects.create(title=f"p{i:02}") for i in range(40)]
    assert len(post_titles()) == 40 and all(post_card(p)["title"] == p.title for p in posts)
    with transaction.atomic():
        for post in posts[:20]:
            post.title += "!"
            post.save()
        BlogPost.objects.filter(pk__in=[p.pk for p in posts[30:]]).delete()
    assert len(post_titles()) == 30 and CALLS["titles"] == 2
    assert [post_card(p)["title"] for p in posts[:30]] == [f"p{i:02}!" for i in range(20)] + [
        f"p{i:02}" for i in range(20, 30)
    ]
    assert all(CALLS[f"card:{p.pk}"] == 2 for p in posts[:20])
    assert all(CALLS[f"card:{p.pk}"] == 1 for p in posts[20:30])


def test_a_tag_that_is_no_string_says_what_to_do() -> None:
    with pytest.raises(TagError, match=r"badly_tagged: the value returned by tags=.*regions.tags.register"):
        badly_tagged(1)
    with pytest.raises(TagError, match=r"unsaved BlogPost"):
        regions.invalidate_tags(BlogPost(title="unsaved"))
    with pytest.raises(TagError, match=r"invalidate_on.*not a tag"):
        regions.region("functions", invalidate_on=[object()])(lambda: 1)
