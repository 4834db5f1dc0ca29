"""``/products/`` and ``/products/<sku>/``: cached pages that an edit refreshes by itself.

The POST handler saves the product and nothing else: no ``invalidate``, no ``refresh``, no key.
The tags of :mod:`config.shop.products` and the app's signal receivers do the rest.
"""

from __future__ import annotations

import time

from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse

from config.shop import products
from config.shop.forms import ProductForm
from config.shop.models import Product


def product_list(request: HttpRequest) -> HttpResponse:
    products.seed()
    listing = products.product_list()
    age = max(0.0, time.time() - float(listing["computed_at"]))  # type: ignore[arg-type]
    return render(request, "shop/products.html", {"listing": listing, "age": age})


def product_detail(request: HttpRequest, sku: str) -> HttpResponse:
    products.seed()
    product = get_object_or_404(Product, sku=sku)
    if request.method == "POST":
        form = ProductForm(request.POST, instance=product)
        if form.is_valid():
            form.save()  # that is all: the pages built from this product are invalid after the commit
            return redirect(f"{reverse('shop:product', args=[sku])}?saved=1")
    else:
        form = ProductForm(instance=product)
    sheet = products.product_sheet(product)
    age = max(0.0, time.time() - float(sheet["computed_at"]))  # type: ignore[arg-type]
    context = {"sheet": sheet, "form": form, "age": age, "saved": request.GET.get("saved") == "1"}
    return render(request, "shop/product.html", context)
