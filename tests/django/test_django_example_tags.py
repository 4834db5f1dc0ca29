"""The example's product pages: an edit refreshes every page built from the product, and no code
names a key. In this process (Django's test client), then across 3 gunicorn workers sharing the
session memcached (the edit is POSTed to whichever worker answers; every worker then shows it)."""

from __future__ import annotations

import http.cookiejar
import re
import subprocess
import sys
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
from django.test import Client

from config.shop import products
from config.shop.models import Product
from tests.django.helpers import example_env, start_gunicorn, stop, wait_for_http

ROOT = Path(__file__).resolve().parents[2]
#: How the example's pages show a time (they showed Unix timestamps): "6 Dec 2026, 22:41:07.123456 UTC".
HUMAN_TIME = r"\d{1,2} [A-Z][a-z]{2} \d{4}, \d\d:\d\d:\d\d\.\d{6} UTC"


def element(html: str, element_id: str) -> str:
    match = re.search(rf'id="{element_id}">([^<]*)<', html)
    assert match, f"no #{element_id} in the page"
    return match.group(1).strip()


@pytest.mark.django_db(transaction=True)
def test_editing_a_product_refreshes_its_pages() -> None:
    client = Client()
    listing = client.get("/products/").content.decode()
    assert element(listing, "price-TEA-001") == "$8.50"
    sheet = client.get("/products/TEA-001/").content.decode()
    assert element(sheet, "sheet-price") == "$8.50"
    other = products.product_sheet(Product.objects.get(sku="TEA-002"))
    stamps = (products.product_list()["computed_at"], other["computed_at"])

    edit = {"name": "Assam breakfast tea", "price_cents": 990, "stock": 7}
    response = client.post("/products/TEA-001/", edit)
    assert response.status_code == 302 and response["Location"] == "/products/TEA-001/?saved=1"
    sheet = client.get(response["Location"]).content.decode()
    assert element(sheet, "sheet-price") == "$9.90" and "rebuilt" in sheet
    assert element(client.get("/products/").content.decode(), "price-TEA-001") == "$9.90"
    assert products.product_list()["computed_at"] > stamps[0]  # the list carries the model's tag
    assert products.product_sheet(Product.objects.get(sku="TEA-002"))["computed_at"] == stamps[1]  # untouched


def test_an_edit_reaches_every_gunicorn_worker(memcached_server: str, tmp_path: Path) -> None:
    env = example_env(memcached_server, tmp_path)
    subprocess.run([sys.executable, "manage.py", "migrate", "--noinput", "-v", "0"], cwd=ROOT, env=env,
                   check=True, timeout=120)
    proc, base = start_gunicorn("config.wsgi:application", env, 3)
    try:
        wait_for_http(f"{base}/products/", proc)

        def prices() -> set[str]:  # many requests on new connections: every worker answers some
            found = set()
            for _ in range(30):
                with urllib.request.urlopen(f"{base}/products/COF-001/", timeout=30) as r:
                    found.add(element(r.read().decode(), "sheet-price"))
                with urllib.request.urlopen(f"{base}/products/", timeout=30) as r:
                    found.add("list " + element(r.read().decode(), "price-COF-001"))
            return found

        assert prices() == {"$13.50", "list $13.50"}  # cached by the workers' first requests
        jar = http.cookiejar.CookieJar()
        opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
        with opener.open(f"{base}/products/COF-001/", timeout=30) as r:
            token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', r.read().decode()).group(1)
        form = urllib.parse.urlencode(
            {"csrfmiddlewaretoken": token, "name": "Ethiopia Yirgacheffe", "price_cents": 1425, "stock": 3}
        ).encode()
        request = urllib.request.Request(f"{base}/products/COF-001/", data=form, headers={"Referer": base})
        with opener.open(request, timeout=30) as r:  # follows the redirect to the refreshed page
            assert element(r.read().decode(), "sheet-price") == "$14.25"
        assert prices() == {"$14.25", "list $14.25"}  # every worker, at once: no stale page
    finally:
        output = stop(proc)
    assert "Traceback" not in str(output), output


@pytest.mark.django_db(transaction=True)
def test_cache_page_and_fragment_run_on_regions() -> None:
    """``/delivery/`` is cached whole by ``cache_page`` in the files region, and the product table of
    ``/products/`` is a ``{% cache %}`` fragment in the functions region (Django's cache framework over
    RegionCache): both are served from their region, and the fragment is rendered anew after an edit."""
    import regions

    client = Client()
    files, functions = regions.get_manager()["files"], regions.get_manager()["functions"]
    sets = files.counts.sets
    first = element(client.get("/delivery/").content.decode(), "rendered-at")
    assert re.fullmatch(HUMAN_TIME, first), f"not a time a reader takes in: {first!r}"
    assert files.counts.sets > sets, "cache_page stored nothing in the files region"
    hits = files.counts.hits
    assert element(client.get("/delivery/").content.decode(), "rendered-at") == first
    assert files.counts.hits > hits

    rows = element(client.get("/products/").content.decode(), "rows-rendered")
    assert re.fullmatch(HUMAN_TIME, rows), f"not a time a reader takes in: {rows!r}"
    hits = functions.counts.hits
    assert element(client.get("/products/").content.decode(), "rows-rendered") == rows
    assert functions.counts.hits > hits
    edit = {"name": "Assam breakfast tea", "price_cents": 990, "stock": 7}
    assert client.post("/products/TEA-001/", edit).status_code == 302
    page = client.get("/products/").content.decode()
    assert element(page, "rows-rendered") != rows and element(page, "price-TEA-001") == "$9.90"
