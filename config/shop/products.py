"""The product pages' cached functions: invalidated by the edits themselves, no key named anywhere.

* ``product_list()``  -- carries the tag of the Product model (``invalidate_on=[Product]``): saving
  or deleting any product makes it a miss.
* ``product_sheet(product)`` -- carries the product's own tag (``tags=lambda product: [product]``):
  only saving or deleting that product makes its sheet a miss.

The view that edits a product only saves it (``form.save()``); the app bumps the tags after the
commit, in every process (django_regions.signals).
"""

from __future__ import annotations

import time

from config.shop import services
from config.shop.models import Product
from regions import region


def seed() -> None:
    """Products from the shipped catalog, created once (concurrent seeders: the first wins)."""
    if not Product.objects.exists():
        rows = [
            Product(sku=p.sku, name=p.name, category=p.category, price_cents=p.price_cents, stock=p.stock)
            for p in services.catalog()
        ]
        Product.objects.bulk_create(rows, ignore_conflicts=True)


@region("functions", invalidate_on=[Product])
def product_list() -> dict[str, object]:
    """Every product with its price and stock (a slow listing query, say)."""
    time.sleep(0.05)
    products = [
        {"sku": p.sku, "name": p.name, "price": p.price, "stock": p.stock} for p in Product.objects.all()
    ]
    return {"products": products, "computed_at": time.time()}


@region("functions", tags=lambda product: [product])
def product_sheet(product: Product) -> dict[str, object]:
    """One product's sheet (a slow page to build, say)."""
    time.sleep(0.05)
    fresh = Product.objects.get(pk=product.pk)
    label = services.CATEGORIES.get(fresh.category, fresh.category.title())
    return {
        "sku": fresh.sku,
        "name": fresh.name,
        "category": label,
        "price": fresh.price,
        "stock": fresh.stock,
        "computed_at": time.time(),
    }
