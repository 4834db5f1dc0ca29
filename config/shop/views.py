"""Views of the example shop.

``/``        one page using all three regions; POST edits the profile and refreshes its cache entry.
``/echo/``   (sync) and ``/aecho/`` (async): fill the request region with request-specific values
             and return what was read back; used to show (and test) that requests never share it.
``/api/menu/`` the category menu, cached per process in the synced "local" region.
``/api/summary/`` products per category, in the tiered "hot" region.
``/api/price/<pk>/`` (sync) and ``/api/aprice/<pk>/`` (async): a product's price, cached in the memcached
             "functions" region, with that region's figures in the answering process.
``/api/rate/<currency>/`` a currency's rate, cached in the Redis "rates" region (in memory, saying how to
             get one when the example has no Redis).
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter

from django.contrib.auth.models import User
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.cache import cache_page

import regions
from config.shop import services
from config.shop.forms import ProfileForm
from regions import ScopedThreadPoolExecutor

DEMO_USERS = {
    "alice": ("Alice", "Liddell", "alice@example.com"),
    "bob": ("Bob", "Builder", "bob@example.com"),
    "carol": ("Carol", "Danvers", "carol@example.com"),
}


def demo_user(username: str) -> User:
    """One of the demo users, created on first use."""
    if username not in DEMO_USERS:
        raise Http404(f"no demo user {username!r}")
    first, last, email = DEMO_USERS[username]
    user, _ = User.objects.get_or_create(
        username=username, defaults={"first_name": first, "last_name": last, "email": email}
    )
    return user


def _row(product: services.Product) -> dict[str, object]:
    """A table row, built in a worker thread: its label lookup uses the submitter's request scope."""
    return {"product": product, "label": services.lookup_category(product.category, source="pool")}


def index(request: HttpRequest) -> HttpResponse:
    """The shop page: per-user card (functions), catalog (files), per-request lookups (request)."""
    username = request.GET.get("user", "alice")
    user = demo_user(username)
    if request.method == "POST":
        form = ProfileForm(request.POST, instance=user)
        if form.is_valid():
            form.save()
            services.profile_card.refresh(user)  # hot cache: recompute now, not on the next view
            return redirect(f"{reverse('shop:index')}?user={username}&saved=1")
    else:
        form = ProfileForm(instance=user)

    started = time.perf_counter()
    card = services.profile_card(user)
    card_ms = (time.perf_counter() - started) * 1000
    products = services.catalog()
    with ScopedThreadPoolExecutor(max_workers=4, thread_name_prefix="shop-pool") as pool:
        rows = list(pool.map(_row, products))
    per_category = Counter(services.lookup_category(p.category) for p in products)  # label -> count
    context = {
        "user_obj": user,
        "users": list(DEMO_USERS),
        "card": card,
        "card_ms": card_ms,
        "card_age": max(0.0, time.time() - float(card["computed_at"])),  # type: ignore[arg-type]
        "card_key": services.profile_card.cache_key(user),
        "form": form,
        "saved": request.GET.get("saved") == "1",
        "rows": rows,
        "categories": sorted(per_category.items()),
        "catalog_path": services.CATALOG.name,
        "file_reads": services.FILE_READS.get(str(services.CATALOG), 0),
    }
    return render(request, "shop/index.html", context)


@cache_page(60, cache="pages")
def delivery(request: HttpRequest) -> HttpResponse:
    """A whole page cached by Django's ``cache_page`` in the ``files`` region (``CACHES["pages"]``):
    rendered once a minute, whichever worker answers; the region's stats count its hits."""
    slots = [(day, 9 + (i * 3) % 8) for i, day in enumerate(("Mon", "Tue", "Wed", "Thu", "Fri"))]
    time.sleep(0.05)  # stands for the slow queries a real delivery page makes
    return render(request, "shop/delivery.html", {"slots": slots, "rendered_at": timezone.now()})


def echo(request: HttpRequest) -> JsonResponse:
    """Store this request's token, read request-cached values built from it (also from threads)."""
    started = time.time()
    token = request.GET.get("token", "")
    n = min(int(request.GET.get("n", "20")), 200)
    request.regions.set("token", token)  # type: ignore[attr-defined]
    first = [services.echo_value(i) for i in range(n)]
    if request.GET.get("threads", "1") != "0":
        with ScopedThreadPoolExecutor(max_workers=4) as pool:
            threaded = list(pool.map(services.echo_value, range(n)))
    else:
        threaded = [services.echo_value(i) for i in range(n)]
    return JsonResponse(
        {
            "token": token,
            "stored": request.regions.get("token"),  # type: ignore[attr-defined]
            "values": first + threaded,
            "entries": request.regions.count(),  # type: ignore[attr-defined]
            "started": started,
            "finished": time.time(),
        }
    )


async def aecho(request: HttpRequest) -> JsonResponse:
    """Async twin of :func:`echo`: awaits between values so concurrent requests interleave."""
    started = time.time()
    token = request.GET.get("token", "")
    n = min(int(request.GET.get("n", "20")), 200)
    request.regions.set("token", token)  # type: ignore[attr-defined]
    first = [await services.aecho_value(i) for i in range(n)]
    again = await asyncio.gather(*(services.aecho_value(i) for i in range(n)))
    return JsonResponse(
        {
            "token": token,
            "stored": request.regions.get("token"),  # type: ignore[attr-defined]
            "values": first + list(again),
            "entries": request.regions.count(),  # type: ignore[attr-defined]
            "started": started,
            "finished": time.time(),
        }
    )


def _functions_region_figures() -> dict[str, object]:
    """Backend and counters of the "functions" region in this server process."""
    functions = regions.get_manager()["functions"]
    stats = functions.stats()
    names = ("hits", "misses", "errors", "unavailable", "hit_rate")
    return {"backend": functions.backend, **{name: stats.get(name) for name in names}}


def menu(request: HttpRequest) -> JsonResponse:
    """The category menu from :func:`services.shop_menu` ("local" region), with who built it when."""
    return JsonResponse(services.shop_menu())


def summary(request: HttpRequest) -> JsonResponse:
    """Products per category from :func:`services.catalog_summary` ("hot" region, tiered)."""
    return JsonResponse(services.catalog_summary())


def price(request: HttpRequest, pk: int) -> JsonResponse:
    """Price of product ``pk`` from :func:`services.product_price` (memcached "functions" region).

    ``{"pk", "price_cents", "currency", "cache"}``: ``cache`` holds the region's backend, hits, misses,
    errors and hit rate in the process that answered, so the cache can be watched from outside (the
    soak test, tests/django/test_django_soak.py, reads its hit rate there).
    """
    return JsonResponse({**services.product_price(pk), "cache": _functions_region_figures()})


async def aprice(request: HttpRequest, pk: int) -> JsonResponse:
    """Async twin of :func:`price`, awaiting :func:`services.aproduct_price`."""
    quote = await services.aproduct_price(pk)
    return JsonResponse({**quote, "cache": _functions_region_figures()})


def rate(request: HttpRequest, currency: str) -> JsonResponse:
    """A currency's rate from :func:`services.exchange_rate` (Redis "rates" region), with that
    region's figures in the answering process."""
    code = currency.upper()
    if code not in services.PER_USD:
        return JsonResponse({"error": f"unknown currency {currency!r}; known: {sorted(services.PER_USD)}"},
                            status=404)
    found = services.exchange_rate(code)
    answer = {**found, "region": regions.get_manager()[services.RATES_REGION].stats()}
    if not services.has_redis_rates():
        answer["note"] = ("the rates region is in this process's memory: this example was given no Redis; "
                          "set REGIONS_REDIS=redis://host:port/db (scripts/serve does when it can start "
                          "redis-server)")
    return JsonResponse(answer)
