"""The example project's pages: every region in use, the POST refresh and the fallback notice."""

from __future__ import annotations

import re
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.test import Client
from pymemcache.client.base import Client as Memcached

import regions
from config.shop import services
from django_regions.fallback import memcached_or_memory
from tests.django.helpers import free_port

pytestmark = pytest.mark.django_db


def figure(html: str, element_id: str) -> str:
    match = re.search(rf'id="{element_id}">([^<]*)<', html)
    assert match, f"no #{element_id} in the page"
    return match.group(1)


def raw_get(address: str, key: Any) -> Any:
    host, port = address.rsplit(":", 1)
    client = Memcached((host, int(port)), connect_timeout=2, timeout=2)
    try:
        return client.get(key)
    finally:
        client.close()


def test_index_uses_all_three_regions(memcached_server: str) -> None:
    client = Client()
    manager = regions.get_manager()
    html = client.get("/").content.decode()
    assert figure(html, "card-name") == "Alice Liddell"
    # request region: 12 lookups from pool threads, 12 from the view, 12 from the template; 4 categories
    assert figure(html, "calls") == "36"
    assert figure(html, "computed") == "4"
    assert "Brewing gear" in html and "Cups &amp; glasses" in html

    # functions region: the per-user card is in memcached under the User's key
    alice = User.objects.get(username="alice")
    assert raw_get(memcached_server, services.profile_card.cache_key(alice)) is not None
    functions_before = manager["functions"].stats()
    html = client.get("/").content.decode()
    after = manager["functions"].stats()
    assert after["hits"] == functions_before["hits"] + 1 and after["misses"] == functions_before["misses"]
    assert figure(html, "computed") == "4", "the next request starts with an empty request region"

    # files region: the import file was read from disk once, then served from the file region
    assert manager["files"].count() == 1
    assert manager["files"].stats()["hits"] >= 2


def test_profile_card_is_per_user() -> None:
    client = Client()
    assert figure(client.get("/?user=bob").content.decode(), "card-name") == "Bob Builder"
    assert figure(client.get("/?user=carol").content.decode(), "card-name") == "Carol Danvers"
    assert figure(client.get("/?user=bob").content.decode(), "card-name") == "Bob Builder"
    bob, carol = User.objects.get(username="bob"), User.objects.get(username="carol")
    assert services.profile_card.cache_key(bob) != services.profile_card.cache_key(carol)
    assert client.get("/?user=mallory").status_code == 404


def test_post_edit_refreshes_the_cached_card() -> None:
    client = Client()
    client.get("/?user=alice")  # the card is now cached
    alice = User.objects.get(username="alice")
    cached = services.profile_card(alice)
    assert cached["name"] == "Alice Liddell"

    response = client.post(
        "/?user=alice", {"first_name": "Alicia", "last_name": "Liddell", "email": "alicia@example.com"}
    )
    assert response.status_code == 302 and response["Location"] == "/?user=alice&saved=1"
    html = client.get(response["Location"]).content.decode()
    assert figure(html, "card-name") == "Alicia Liddell", "refreshed at save time, not stale"
    assert "rebuilt the cached card" in html
    fresh = services.profile_card(User.objects.get(username="alice"))
    assert fresh["name"] == "Alicia Liddell" and fresh["computed_at"] > cached["computed_at"]


def test_invalid_post_shows_errors_and_keeps_the_cache() -> None:
    client = Client()
    client.get("/?user=bob")
    response = client.post("/?user=bob", {"first_name": "B", "last_name": "B", "email": "not-an-email"})
    assert response.status_code == 200
    assert "Enter a valid email address" in response.content.decode()
    assert services.profile_card(User.objects.get(username="bob"))["name"] == "Bob Builder"


def test_echo_views_return_request_specific_values() -> None:
    client = Client()
    data = client.get("/echo/", {"token": "tok", "n": 5}).json()
    assert data["stored"] == "tok"
    assert data["values"] == [f"tok:{i}" for i in range(5)] * 2
    assert data["entries"] == 6, "5 cached values + the token"


def test_fallback_helper_uses_memcached_when_it_answers(memcached_server: str) -> None:
    region, notice = memcached_or_memory(memcached_server, timeout=60)
    assert region == {"BACKEND": "memcached", "LOCATION": memcached_server, "TIMEOUT": 60}
    assert notice is None


def test_fallback_helper_falls_back_to_memory_with_a_notice() -> None:
    dead = f"127.0.0.1:{free_port()}"
    region, notice = memcached_or_memory(dead, timeout=60)
    assert region["BACKEND"] == "memory" and region["TIMEOUT"] == 60
    assert notice and dead in notice and "in-process memory" in notice
    region, notice = memcached_or_memory(None)
    assert region["BACKEND"] == "memory"
    assert notice and "REGIONS_MEMCACHED" in notice
    assert regions.config.check({"functions": region}) == []


def test_fallback_notice_is_shown_on_every_page(settings: Any) -> None:
    region, notice = memcached_or_memory(f"127.0.0.1:{free_port()}")
    settings.CACHE_REGIONS = {**settings.CACHE_REGIONS, "functions": region}
    settings.REGIONS_NOTICES = [notice]
    client = Client()
    html = client.get("/").content.decode()  # the staff-only dashboard: test_django_dashboard.py
    assert "Fallback:" in html and "is not answering" in html
