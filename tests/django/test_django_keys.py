"""Model instances and HttpRequest as arguments of cached functions."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth.models import Group, User
from django.core.handlers.asgi import ASGIRequest
from django.test import RequestFactory
from django.utils.safestring import SafeString, mark_safe

import regions

CALLS: list[Any] = []


@regions.region("functions")
def describe(obj: Any) -> str:
    CALLS.append(obj)
    return str(obj)


@regions.region("request")
def per_request(obj: Any) -> str:
    return str(obj)


@pytest.fixture(autouse=True)
def _clear_calls() -> None:
    CALLS.clear()


@pytest.mark.django_db
def test_saved_instance_is_keyed_by_app_label_model_name_and_pk() -> None:
    alice = User.objects.create(username="alice")
    bob = User.objects.create(username="bob")
    key = describe.cache_key(alice)
    assert "auth" in key and "user" in key and f"i{alice.pk}" in key
    assert describe.cache_key(User.objects.get(pk=alice.pk)) == key, "another instance, same row: same key"
    assert describe.cache_key(bob) != key
    group = Group.objects.create(pk=alice.pk, name="g")
    assert describe.cache_key(group) != key, "same pk in another model: another key"

    assert describe(alice) == "alice"
    alice_again = User.objects.get(pk=alice.pk)
    assert describe(alice_again) == "alice"
    assert describe(bob) == "bob"
    assert [u.username for u in CALLS] == ["alice", "bob"]


@pytest.mark.django_db
def test_unsaved_instance_is_rejected_with_the_remedy() -> None:
    with pytest.raises(regions.UncacheableArgument) as info:
        describe(User(username="nobody"))
    message = str(info.value)
    assert "unsaved auth.User" in message
    assert "save it first or pass its pk" in message
    assert "describe" in message and "'obj'" in message, "names the function and the argument"
    assert CALLS == [], "the function did not run with an uncacheable argument"


def test_http_request_is_rejected_saying_to_pass_user_pk() -> None:
    request = RequestFactory().get("/")
    with pytest.raises(regions.UncacheableArgument) as info:
        describe(request)
    assert "pass request.user.pk or the values you need" in str(info.value)
    assert "WSGIRequest" in str(info.value)
    with pytest.raises(regions.UncacheableArgument, match=r"request\.user\.pk"):
        describe.cache_key(request)


def test_asgi_request_is_rejected_too() -> None:
    scope = {"type": "http", "method": "GET", "path": "/", "query_string": b"", "headers": []}
    request = ASGIRequest(scope, body_file=__import__("io").BytesIO(b""))
    with pytest.raises(regions.UncacheableArgument, match=r"ASGIRequest.*request\.user\.pk"):
        describe(request)


def test_request_is_rejected_inside_a_request_scope_as_well() -> None:
    with regions.request_scope(), pytest.raises(regions.UncacheableArgument, match="request.user.pk"):
        per_request(RequestFactory().get("/"))


def test_safe_string_and_plain_string_never_share_an_entry() -> None:
    """A cached SafeString must never come back for a plain string (it would skip escaping)."""
    assert describe.cache_key(mark_safe("<b>")) != describe.cache_key("<b>")
    assert isinstance(describe(mark_safe("<b>")), SafeString)
    plain = describe("<b>")
    assert plain == "<b>" and not isinstance(plain, SafeString), "unescaped HTML served from cache"
    assert isinstance(describe(mark_safe("<b>")), SafeString)
    assert [type(c) for c in CALLS] == [SafeString, str]
