"""Cached functions of the example shop, one per region.

* ``profile_card(user)``   -- "functions" region (memcached): per user, keyed by the User's pk.
* ``readfile(path)``       -- "files" region (on disk): an import file's contents, as in Beaker's blog post.
* ``category_label(code)`` -- "request" region: looked up for every row of a page, computed once per request.
* ``shop_menu()``         -- "local" region: in each process, cleared in every process at once.
* ``catalog_summary()``   -- "hot" region: tiered, computed by one process, read by all.
* ``product_price(pk)`` / ``aproduct_price(pk)`` -- "functions" region: a product's price, sync and async
  (served by ``/api/price/<pk>/`` and ``/api/aprice/<pk>/``).
* ``exchange_rate(code)``   -- "rates" region (Redis): a currency's rate, kept a minute; on Redis when
  the settings were given one (``REGIONS_REDIS``), else in each process's memory (:func:`has_redis_rates`).
"""

from __future__ import annotations

import asyncio
import csv
import io
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from django.contrib.auth.models import User

import regions
from regions import region

CATALOG = Path(__file__).resolve().parent / "data" / "catalog.csv"

CATEGORIES = {"tea": "Tea", "coffee": "Coffee", "cups": "Cups & glasses", "accessories": "Brewing gear"}

_lock = threading.Lock()
#: Disk reads of import files by this process (the file region makes this stay at 1 per file).
FILE_READS: dict[str, int] = {}


@dataclass(frozen=True)
class Product:
    sku: str
    name: str
    category: str
    price_cents: int
    stock: int

    @property
    def price(self) -> str:
        return f"${self.price_cents / 100:.2f}"


@region("files")
def readfile(filepath: str) -> str:
    """Return the contents of an import file (kept 5 days in the file region)."""
    with _lock:
        FILE_READS[filepath] = FILE_READS.get(filepath, 0) + 1
    with open(filepath, encoding="utf-8") as f:
        return f.read()


@region("local")
def shop_menu() -> dict[str, object]:
    """The category menu, built once per process ("local" region: a synced memory region), with
    the process and the time it was built, so a clear can be watched reaching every worker."""
    return {"categories": sorted(CATEGORIES.values()), "built_by": os.getpid(), "built_at": time.time()}


@region("hot")
def catalog_summary() -> dict[str, object]:
    """Products per category ("hot" region: tiered), with the process that computed it and when."""
    per_category: dict[str, int] = {}
    for product in catalog():
        per_category[product.category] = per_category.get(product.category, 0) + 1
    return {"per_category": per_category, "built_by": os.getpid(), "built_at": time.time()}


def catalog() -> list[Product]:
    """The products of the shipped import file, parsed from the cached file contents."""
    rows = csv.DictReader(io.StringIO(readfile(str(CATALOG))))
    return [Product(r["sku"], r["name"], r["category"], int(r["price_cents"]), int(r["stock"])) for r in rows]


@region("functions")
def profile_card(user: User) -> dict[str, object]:
    """A per-user summary that is slow to build (cached per user: key = ("auth", "user", pk))."""
    time.sleep(0.2)  # stands in for the slow queries a real profile page makes
    products = catalog()
    picks = [p.name for i, p in enumerate(products) if (i + user.pk) % 4 == 0][:3]
    return {
        "name": user.get_full_name() or user.username,
        "email": user.email or "-",
        "username": user.username,
        "recommended": picks,
        "computed_at": time.time(),
    }


def _count(*names: str) -> None:
    """Add 1 to counters kept in the request region itself, so each request counts only its own."""
    request_cache = regions.get_manager()["request"]
    with _lock:
        for name in names:
            request_cache.set(name, request_cache.get(name, 0) + 1)


@region("request")
def category_label(code: str) -> str:
    """Display label of a category: one "query" per category per request, however often it's asked."""
    _count("lookups.computed")
    time.sleep(0.003)  # stands in for a database lookup
    return CATEGORIES.get(code, code.title())


def lookup_category(code: str, *, source: str = "view") -> str:
    """:func:`category_label`, counting the call (``source``: view, pool or template) for the page."""
    _count("lookups.calls", f"lookups.{source}")
    return category_label(code)


def lookup_counts() -> dict[str, int]:
    """This request's category lookups so far: calls, computed, and calls per source."""
    request_cache = regions.get_manager()["request"]
    names = ("calls", "computed", "view", "pool", "template")
    return {name: request_cache.get(f"lookups.{name}", 0) for name in names}


@region("request")
def echo_value(i: int) -> str:
    """Request-specific value ``"<token>:<i>"`` (the token is what this request stored)."""
    time.sleep(0.0005)
    return f"{regions.get_manager()['request'].get('token')}:{i}"


@region("request")
async def aecho_value(i: int) -> str:
    """Async twin of :func:`echo_value` (cached per request too; awaits to interleave requests)."""
    await asyncio.sleep(0.0005)
    return f"{regions.get_manager()['request'].get('token')}:{i}"


def list_price_cents(pk: int) -> int:
    """List price of product ``pk`` in cents: the demo's stand-in for a price table (pure, no I/O)."""
    return 250 + (pk * 7_919) % 9_750


def _quote(pk: int) -> dict[str, object]:
    return {"pk": pk, "price_cents": list_price_cents(pk), "currency": "USD"}


@region("functions")
def product_price(pk: int) -> dict[str, object]:
    """Price of product ``pk`` (cached per pk in the "functions" region: key = pk)."""
    time.sleep(0.002)  # stands in for the pricing query
    return _quote(pk)


@region("functions")
async def aproduct_price(pk: int) -> dict[str, object]:
    """Async twin of :func:`product_price` (its own entries in the same region)."""
    await asyncio.sleep(0.002)
    return _quote(pk)



#: The example's Redis region (an in-process memory region when the settings were given no Redis).
RATES_REGION = "rates"
#: Units of a currency per US dollar: the demo's stand-in for a rates service.
PER_USD = {"USD": 1.0, "EUR": 0.92, "GBP": 0.79, "JPY": 151.2, "CHF": 0.88}


def has_redis_rates() -> bool:
    """Whether the "rates" region is on Redis (the example was given one: ``REGIONS_REDIS``)."""
    manager = regions.get_manager()
    return RATES_REGION in manager and manager[RATES_REGION].backend == "redis"


@region(RATES_REGION)
def exchange_rate(currency: str) -> dict[str, object]:
    """Units of ``currency`` per US dollar (cached per currency a minute in the Redis "rates" region)."""
    time.sleep(0.002)  # stands in for the rates service
    return {"currency": currency, "per_usd": PER_USD[currency], "computed_at": time.time()}
