"""The /regions/ dashboard: who may see it, what it never shows, and what a GET costs.

Real users in the test database, a real login (signed-cookie sessions), real memcached servers
(paused with SIGSTOP) and real folders. What a GET touches on disk is recorded with an audit hook
(``sys.addaudithook``): Python reports every ``open`` and ``os.scandir`` to it.
"""

from __future__ import annotations

import os
import re
import signal
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import pytest
from django.contrib.auth.models import Permission, User
from django.contrib.contenttypes.models import ContentType
from django.test import Client
from django.urls import URLPattern, reverse

import django_regions.urls
import regions
from django_regions.report import SAMPLE_LISTINGS
from regions import fleet
from regions.backends.file import folder_name
from tests.conftest import memcached_stats_of
from tests.django.helpers import free_port
from tests.faults.conftest import all_threads_stopped

pytestmark = pytest.mark.django_db

URL = "/regions/"
PASSWORD = "correct horse battery staple"
SECRET_VALUE = "value-nobody-may-see-0b6f"
SECRET_KEY_TEXT = "key-nobody-may-see-7d1e"

# What a GET touches: (event, path) for every open and directory listing, while recording.
_touched: list[tuple[str, str]] | None = None


def _audit(event: str, args: tuple[Any, ...]) -> None:
    if _touched is not None and event in ("open", "os.scandir", "os.listdir") and args:
        path = args[0]
        if isinstance(path, str | bytes | os.PathLike):
            _touched.append((event, os.fsdecode(path)))


sys.addaudithook(_audit)  # cannot be removed: it records only inside touched()


@contextmanager
def touched(under: Path) -> Iterator[list[tuple[str, str]]]:
    """The opens and listings made meanwhile (by any thread) of paths under ``under``."""
    global _touched
    events: list[tuple[str, str]] = []
    _touched = events
    found: list[tuple[str, str]] = []
    try:
        yield found
    finally:
        _touched = None
        found += [(event, path) for event, path in events if path.startswith(str(under))]


@pytest.fixture(autouse=True)
def logins(settings: Any) -> None:
    """Sessions and authentication (the example project has neither): signed-cookie sessions."""
    settings.SESSION_ENGINE = "django.contrib.sessions.backends.signed_cookies"
    settings.MIDDLEWARE = [
        "django.contrib.sessions.middleware.SessionMiddleware",
        "django.contrib.auth.middleware.AuthenticationMiddleware",
        *settings.MIDDLEWARE,
    ]


def make_user(**fields: Any) -> User:
    return User.objects.create_user(f"user{User.objects.count()}", password=PASSWORD, **fields)


def logged_in(user: User) -> Client:
    """A test client that logged in as ``user`` through the authentication backend."""
    client = Client()
    assert client.login(username=user.username, password=PASSWORD)
    return client


@pytest.fixture
def as_user() -> Callable[..., Client]:
    """``as_user(is_staff=True)``: a test client logged in as a new real user."""
    return lambda **fields: logged_in(make_user(**fields))


@pytest.fixture
def staff(as_user: Callable[..., Client]) -> Client:
    return as_user(is_staff=True)


def guarded_urls() -> list[str]:
    """Every view of django_regions.urls (all take no arguments today)."""
    patterns = [p for p in django_regions.urls.urlpatterns if isinstance(p, URLPattern)]
    assert patterns and len(patterns) == len(django_regions.urls.urlpatterns)
    return [reverse(f"django_regions:{p.name}") for p in patterns]


# who may see it -------------------------------------------------------------------------------


def test_anonymous_is_sent_to_log_in_and_sees_nothing(memcached_server: str, cache_regions: Any) -> None:
    for url in guarded_urls():
        response = Client().get(url)
        assert response.status_code == 302, url
        assert unquote(response["Location"]) == f"/accounts/login/?next={url}"
        body = response.content.decode()
        assert memcached_server not in body and cache_regions["files"]["LOCATION"] not in body


def test_a_logged_in_user_who_is_not_staff_gets_403(
    as_user: Callable[..., Client], memcached_server: str
) -> None:
    client = as_user()
    for url in guarded_urls():
        response = client.get(url)
        assert response.status_code == 403, url
        assert memcached_server not in response.content.decode()


def test_an_inactive_staff_user_gets_no_access(settings: Any, as_user: Callable[..., Client]) -> None:
    client = as_user(is_staff=True)
    User.objects.filter(is_staff=True).update(is_active=False)  # deactivated after logging in
    assert client.get(URL).status_code in (302, 403)


def test_staff_sees_every_region_and_no_cached_value_or_key(
    staff: Client, memcached_server: str, cache_regions: Any, settings: Any
) -> None:
    settings.REGIONS_NOTICES = ["memcached at 10.0.0.9:11211 is not answering"]
    manager = regions.get_manager()
    manager["functions"].set(SECRET_KEY_TEXT, SECRET_VALUE)
    manager["files"].set(SECRET_KEY_TEXT, SECRET_VALUE)
    for _ in range(3):
        assert manager["functions"].get(SECRET_KEY_TEXT) == SECRET_VALUE
    assert manager["files"].get("absent") is None
    response = staff.get(URL)
    assert response.status_code == 200
    html = response.content.decode()
    for name in cache_regions:
        assert f'id="region-{name}"' in html
    assert memcached_server in html and cache_regions["files"]["LOCATION"] in html
    assert html.count("healthy</span>") == 3
    assert "10.0.0.9:11211 is not answering" in html, "notices are shown"
    functions = re.search(r'id="region-functions".*?</article>', html, re.S)
    assert functions and re.search(r"<strong>\d+\.\d%</strong>", functions.group(0)), "a hit rate"
    files = re.search(r'id="region-files".*?</article>', html, re.S)
    assert files and re.search(r'Entries</div><div class="v">1</div>', files.group(0)), "counted exactly"
    assert SECRET_VALUE not in html and SECRET_KEY_TEXT not in html
    assert "no-store" in response["Cache-Control"] and "private" in response["Cache-Control"]


def test_public_setting_opens_it_to_anyone(settings: Any) -> None:
    settings.REGIONS_DASHBOARD_PUBLIC = True
    assert Client().get(URL).status_code == 200
    settings.REGIONS_DASHBOARD_PUBLIC = "yes"  # only True opens it
    assert Client().get(URL).status_code == 302


def test_permission_setting_replaces_staff_status(settings: Any, as_user: Callable[..., Client]) -> None:
    permission = Permission.objects.create(
        codename="view_regions_dashboard",
        name="Can view the cache regions dashboard",
        content_type=ContentType.objects.get_for_model(User),
    )
    settings.REGIONS_DASHBOARD_PERMISSION = "auth.view_regions_dashboard"
    user = make_user()
    user.user_permissions.add(permission)
    holder = logged_in(user)
    staff_without = as_user(is_staff=True)
    superuser = as_user(is_staff=True, is_superuser=True)
    assert holder.get(URL).status_code == 200
    assert staff_without.get(URL).status_code == 403
    assert superuser.get(URL).status_code == 200
    assert Client().get(URL).status_code == 302


def test_without_authentication_middleware_nobody_sees_it(settings: Any) -> None:
    settings.MIDDLEWARE = [m for m in settings.MIDDLEWARE if "auth" not in m and "sessions" not in m]
    assert Client().get(URL).status_code == 403


# what a GET costs -----------------------------------------------------------------------------


def fill(region: Any, count: int) -> None:
    for i in range(count):
        region.set(("entry", i), i)


def file_region(staff_settings: Any, tmp_path: Path) -> Any:
    staff_settings.CACHE_REGIONS = {
        "files": {"BACKEND": "file", "LOCATION": str(tmp_path / "files"), "TIMEOUT": 3600},
    }
    return regions.get_manager()["files"]


def without_figures(region: Any, paths: list[str]) -> list[str]:
    """``paths`` but the deployment figures that the background thread reads for the dashboard
    (regions/fleet.py: one small entry per live process, and no cached value)."""
    figures = folder_name(f"{region.store.identity}:{fleet.NAMESPACE}")
    return [p for p in paths if f"/{figures}/" not in p]


def entries_shown(html: str) -> str:
    match = re.search(r'Entries( \(estimate\))?</div><div class="v">([^<]*)<', html)
    assert match, "no entries figure"
    return (match.group(1) or "") + match.group(2)


def test_a_get_at_20000_file_entries_lists_a_bounded_number_of_folders_and_opens_no_entry(
    staff: Client, settings: Any, tmp_path: Path
) -> None:
    region = file_region(settings, tmp_path)
    fill(region, 20_000)
    with touched(tmp_path / "files") as events:
        html = staff.get(URL).content.decode()
    listings = [path for event, path in events if event != "open"]
    opened = without_figures(region, [path for event, path in events if event == "open"])
    assert 0 < len(listings) <= SAMPLE_LISTINGS, len(listings)
    assert not [p for p in opened if p.endswith(".entry")], "an entry was read"
    assert set(opened) <= {str(tmp_path / "files")}, opened  # the health probe only (an O_TMPFILE)
    shown = entries_shown(html)
    assert shown.startswith(" (estimate)~"), shown
    estimate = int(shown.removeprefix(" (estimate)~").replace(",", ""))
    assert 14_000 <= estimate <= 26_000, estimate  # entry files spread evenly: within 10 % in practice


def test_a_small_file_region_is_counted_exactly(staff: Client, settings: Any, tmp_path: Path) -> None:
    region = file_region(settings, tmp_path)
    fill(region, 12)
    with touched(tmp_path / "files") as events:
        html = staff.get(URL).content.decode()
    assert entries_shown(html) == "12"
    opened = without_figures(region, [p for event, p in events if event == "open"])
    assert not [p for p in opened if p.endswith(".entry")]


def test_a_get_while_memcached_hangs_asks_the_breaker_not_the_server(
    staff: Client, settings: Any, memcached_factory: Callable[..., Any]
) -> None:
    server = memcached_factory()
    settings.CACHE_REGIONS = {
        "functions": {
            "BACKEND": "memcached",
            "LOCATION": server.address,
            "OPTIONS": {"connect_timeout": 5, "timeout": 5},  # probing it would take 5 s
        }
    }
    region = regions.get_manager()["functions"]
    region.set("warm", 1)  # the region's own pooled connection exists before the count
    before = int(str(memcached_stats_of(server.address)["total_connections"]))  # this one counts itself
    os.kill(server.proc.pid, signal.SIGSTOP)
    while not all_threads_stopped(server.proc.pid):  # delivered asynchronously
        time.sleep(0.001)
    try:
        started = time.monotonic()
        response = staff.get(URL)
        elapsed = time.monotonic() - started
    finally:
        os.kill(server.proc.pid, signal.SIGCONT)
    assert response.status_code == 200
    assert elapsed < 2.5, f"the GET waited {elapsed:.1f} s: it asked the hung server"
    after = int(str(memcached_stats_of(server.address)["total_connections"]))
    assert after - before == 1, "the GET opened a connection (only this stats call may)"
    html = response.content.decode()
    assert server.address in html and "healthy</span>" in html


def test_a_server_the_breaker_marked_down_is_shown_down(staff: Client, settings: Any) -> None:
    dead = f"127.0.0.1:{free_port()}"
    settings.CACHE_REGIONS = {"functions": {"BACKEND": "memcached", "LOCATION": dead}}
    region = regions.get_manager()["functions"]
    assert region.get("anything") is None  # refused: the breaker marks the server down
    html = staff.get(URL).content.decode()
    card = re.search(r'id="region-functions".*?</article>', html, re.S)
    assert card, html
    assert "not answering" in card.group(0) and dead in card.group(0)
    # and why: the connection was refused
    assert re.search(r"down for \d+\.\d s \(ConnectionRefusedError: ", card.group(0)), card.group(0)


# what a newcomer sees -------------------------------------------------------------------------


def test_the_header_links_only_what_the_project_configures(settings: Any) -> None:
    """The dashboard linked "Example shop" to / in every project that mounted it."""
    settings.REGIONS_DASHBOARD_PUBLIC = True
    settings.REGIONS_DASHBOARD_LINKS = []
    nav = re.search(r"<nav>(.*?)</nav>", Client().get(URL).content.decode(), re.S)
    assert nav and "Example shop" not in nav.group(1) and nav.group(1).count("<a ") == 1
    settings.REGIONS_DASHBOARD_LINKS = [("Shop", "shop:index"), ("Docs", "/docs/")]
    nav = re.search(r"<nav>(.*?)</nav>", Client().get(URL).content.decode(), re.S)
    assert nav and '<a href="/">Shop</a><a href="/docs/">Docs</a><a class="on"' in nav.group(1)


def why(response: Any) -> str:
    assert response.status_code == 403
    found = re.search(r'id="why">(.*?)</div>', response.content.decode(), re.S)
    assert found, "the 403 page says why"
    return " ".join(re.sub(r"<[^>]+>", "", found.group(1)).split())


def test_the_403_page_says_why_without_saying_too_much(
    settings: Any, as_user: Callable[..., Client], memcached_server: str
) -> None:
    settings.REGIONS_NOTICES = [f"memcached at {memcached_server} is not answering"]
    client = as_user()
    text = why(client.get(URL))
    assert "signed in as user0, which is not an active staff account" in text
    assert memcached_server not in client.get(URL).content.decode(), "notices are for operators"

    settings.REGIONS_DASHBOARD_PERMISSION = "auth.view_regions_dashboard"
    text = why(as_user(is_staff=True).get(URL))
    assert "does not hold the permission" in text and "view_regions_dashboard" not in text

    settings.REGIONS_DASHBOARD_PERMISSION = None
    settings.MIDDLEWARE = [m for m in settings.MIDDLEWARE if "auth" not in m and "sessions" not in m]
    settings.DEBUG = False
    text = why(Client().get(URL))
    assert "no sign-in" in text and "AuthenticationMiddleware" in text and "REGIONS_DASHBOARD_PUBLIC" in text
    assert "DEBUG is off here" in text
    settings.DEBUG = True
    assert "DEBUG is off" not in why(Client().get(URL))
