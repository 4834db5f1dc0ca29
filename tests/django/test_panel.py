"""The django-debug-toolbar panel (django_regions.panels.RegionsPanel).

Driven the way the toolbar's own tests drive panels (a ``DebugToolbar`` on a RequestFactory request,
``get_panel_by_id``, then the middleware's steps), over real regions: memcached, memory and the
request region, with real decorated functions. Then the example project, served with DEBUG on:
with the toolbar, the panel's content of a shop page; without it (not importable), the shop as before.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from django.http import HttpRequest, HttpResponse
from django.test import RequestFactory

import regions
from django_regions.middleware import RequestRegionMiddleware
from regions import trace
from tests.django.helpers import example_env, free_port, stop, wait_for_http

ROOT = Path(__file__).resolve().parents[2]
SECRET = "tr0ub4dor-planted-value"  # cached as values below: must never reach the panel


@regions.region("functions")
def price(pk: int) -> dict[str, Any]:
    return {"pk": pk, "cents": 100 * pk, "note": SECRET}


@regions.region("memory")
def square(x: int) -> int:
    return x * x


@regions.region("request")
def label(code: str) -> str:
    return f"{SECRET} {code}"


@regions.region("down")
def unreachable(x: int) -> int:
    return x


def view(request: HttpRequest) -> HttpResponse:
    price(1), price(1), square(3), square(3)
    regions.get_manager()["request"].set("token", [SECRET] * 3)  # set directly, not by a call
    label("BREW"), label("BREW"), unreachable(5)
    return HttpResponse("<html><body>shop</body></html>")


@pytest.fixture
def toolbar_installed(settings: Any, cache_regions: dict[str, Any]) -> None:
    settings.INSTALLED_APPS = [*settings.INSTALLED_APPS, "debug_toolbar"]
    settings.ROOT_URLCONF = "tests.django.toolbar_urls"
    settings.DEBUG_TOOLBAR_PANELS = [
        "debug_toolbar.panels.timer.TimerPanel",
        "django_regions.panels.RegionsPanel",
    ]
    settings.CACHE_REGIONS = {
        **cache_regions,
        "memory": {"BACKEND": "memory"},
        "down": {"BACKEND": "memcached", "LOCATION": f"127.0.0.1:{free_port()}"},
    }


def run_toolbar(get_response: Callable[[HttpRequest], HttpResponse]) -> Any:
    """What DebugToolbarMiddleware does for one request; returns the panel."""
    from debug_toolbar.toolbar import DebugToolbar

    request = RequestFactory().get("/")
    request.META["REMOTE_ADDR"] = "127.0.0.1"
    toolbar = DebugToolbar(request, get_response)
    panel = toolbar.get_panel_by_id("RegionsPanel")
    assert panel.enabled
    for each in toolbar.enabled_panels:
        each.enable_instrumentation()
    try:
        response = toolbar.process_request(request)
    finally:
        for each in reversed(toolbar.enabled_panels):
            each.disable_instrumentation()
    for each in reversed(toolbar.enabled_panels):
        each.generate_stats(request, response)
    panel.toolbar_html = toolbar.render_toolbar()
    return panel


@pytest.mark.usefixtures("toolbar_installed")
@pytest.mark.parametrize("inside", [True, False], ids=["toolbar inside the request scope", "outside"])
def test_the_panel_lists_calls_totals_and_request_entries(inside: bool) -> None:
    if inside:  # the example's order: RequestRegionMiddleware, then the toolbar's middleware
        with regions.request_scope():
            panel = run_toolbar(view)
    else:  # the toolbar first: the scope is closed when the panel makes its figures
        panel = run_toolbar(RequestRegionMiddleware(view))
    stats = panel.get_stats()
    assert stats["final"] is inside
    calls = [(c["region"], c["function"].rsplit(".", 1)[-1], c["key"], c["outcome"]) for c in stats["calls"]]
    assert calls == [
        ("functions", "price", "i1", "miss"),
        ("functions", "price", "i1", "hit"),
        ("memory", "square", "i3", "miss"),
        ("memory", "square", "i3", "hit"),
        ("request", "label", "s4:BREW", "miss"),
        ("request", "label", "s4:BREW", "hit"),
        ("down", "unreachable", "i5", "error"),
    ]
    assert all(c["ms"] > 0 for c in stats["calls"])

    totals = {row["region"]: row for row in stats["totals"]}
    assert list(totals) == ["down", "functions", "memory", "request"]
    assert set(totals["down"]) == {"region", "calls", "hit", "miss", "stale", "error", "ms"}
    for name, row in totals.items():
        assert row["calls"] == row["hit"] + row["miss"] + row["stale"] + row["error"], name
        ms = sum(c["ms"] for c in stats["calls"] if c["region"] == name)
        assert row["ms"] == pytest.approx(ms)
    assert (totals["functions"]["hit"], totals["functions"]["miss"], totals["down"]["error"]) == (1, 1, 1)
    assert panel.nav_subtitle == f"7 calls, 3 hits, {sum(c['ms'] for c in stats['calls']):.1f} ms"

    entries = {(e["function"].rsplit(".", 1)[-1], e["key"]): (e["type"], e["size"]) for e in stats["entries"]}
    assert {key: kind for key, (kind, _) in entries.items()} == {
        ("label", "s4:BREW"): "str",
        ("(set directly)", "s5:token"): "list",
    }
    assert re.fullmatch(rf"{len(SECRET) + 5} chars, \d+ B", entries[("label", "s4:BREW")][1])
    assert re.fullmatch(r"3 items, \d+ B", entries[("(set directly)", "s5:token")][1])

    content = panel.content
    for text in ("Totals per region", "test_panel.price", "s4:BREW", "(set directly)", "djrg-error"):
        assert text in content
    for html in (content, panel.toolbar_html, json.dumps(stats)):
        assert SECRET not in html  # neither the memcached value, the request value nor the direct one
    assert "Cache regions" in panel.toolbar_html and panel.nav_subtitle in panel.toolbar_html

    assert not trace.ON and trace.current() is None  # recording ended with the request
    assert price(1)["note"] == SECRET and price.cache_key(1) is not None


@pytest.mark.usefixtures("toolbar_installed")
def test_an_async_view_under_the_toolbar_is_recorded() -> None:
    @regions.region("functions")
    async def aprice(pk: int) -> int:
        return pk

    async def get_response(request: HttpRequest) -> HttpResponse:
        async with regions.request_scope():
            await aprice(2), await aprice(2)
        return HttpResponse("<html><body></body></html>")

    async def scenario() -> Any:
        from debug_toolbar.toolbar import DebugToolbar

        request = RequestFactory().get("/")
        toolbar = DebugToolbar(request, get_response)
        panel = toolbar.get_panel_by_id("RegionsPanel")
        panel.enable_instrumentation()
        response = await panel.process_request(request)
        panel.disable_instrumentation()
        panel.generate_stats(request, response)
        return panel

    import asyncio

    stats = asyncio.run(scenario()).get_stats()
    assert [(c["key"], c["outcome"]) for c in stats["calls"]] == [("i2", "miss"), ("i2", "hit")]


def test_importing_django_regions_never_imports_the_toolbar() -> None:
    code = (
        "import sys, django_regions, django_regions.apps, django_regions.middleware, regions.trace; "
        "assert not [m for m in sys.modules if m.startswith('debug_toolbar')], 'imported'"
    )
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "tests.django.settings"}
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, check=True, timeout=60)


# the example project, served ----------------------------------------------------------------------
@pytest.fixture
def serve_debug(memcached_server: str, tmp_path: Path) -> Iterator[Callable[[bool], str]]:
    """``serve_debug(toolbar)``: the example under ``runserver`` with DEBUG on (not as a test run:
    no PYTEST_VERSION), with django-debug-toolbar importable or not."""
    procs: list[subprocess.Popen[bytes]] = []
    env = example_env(memcached_server, tmp_path, DJANGO_DEBUG="1", PYTHONUNBUFFERED="1")
    env.pop("PYTEST_VERSION", None)
    subprocess.run([sys.executable, "manage.py", "migrate", "--noinput", "-v", "0"], cwd=ROOT, env=env,
                   check=True, timeout=120)

    def start(toolbar: bool) -> str:
        port = free_port()
        block = "" if toolbar else "sys.modules['debug_toolbar'] = None; "  # find_spec() -> None
        code = (
            f"import sys; {block}from django.core.management import execute_from_command_line; "
            f"execute_from_command_line(['manage.py', 'runserver', '127.0.0.1:{port}', '--noreload'])"
        )
        log = tmp_path / f"server-{port}.log"
        with open(log, "wb") as out:
            proc = subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, env=env, stdout=out,
                                    stderr=subprocess.STDOUT)
        procs.append(proc)
        wait_for_http(f"http://127.0.0.1:{port}/echo/?token=ready&n=1", proc, log)
        return f"http://127.0.0.1:{port}"

    yield start
    for proc in procs:
        stop(proc)


def get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=30) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode(errors="replace")


def test_the_example_shows_the_panel_in_debug(serve_debug: Callable[[bool], str]) -> None:
    base = serve_debug(True)
    get(f"{base}/")  # the card, the catalog and the labels are cached now
    status, page = get(f"{base}/?user=bob")
    assert status == 200 and 'id="djDebug"' in page and "RegionsPanel" in page
    request_id = re.search(r'data-request-id="([^"]+)"', page).group(1)
    status, body = get(f"{base}/__debug__/render_panel/?request_id={request_id}&panel_id=RegionsPanel")
    assert status == 200, body
    content = json.loads(body)["content"]
    assert "config.shop.services.profile_card" in content and "config.shop.services.category_label" in content
    assert re.search(r"djrg-miss\">miss<", content) and re.search(r"djrg-hit\">hit<", content)
    assert "Bob Builder" in page and "Bob Builder" not in content  # the card is on the page, not in the panel
    assert "Brewing gear" in page and "Brewing gear" not in content


def test_the_example_without_the_toolbar_serves_as_before(serve_debug: Callable[[bool], str]) -> None:
    base = serve_debug(False)
    status, page = get(f"{base}/")
    assert status == 200 and "Alice Liddell" in page and "djDebug" not in page
    assert get(f"{base}/__debug__/render_panel/")[0] == 404
