"""The shop's products in the database (seeded from data/catalog.csv on first use)."""

from __future__ import annotations

from django.db import models


class Product(models.Model):
    sku = models.CharField(max_length=20, unique=True)
    name = models.CharField(max_length=100)
    category = models.CharField(max_length=30)
    price_cents = models.PositiveIntegerField()
    stock = models.PositiveIntegerField()

    class Meta:
        ordering = ["sku"]

    def __str__(self) -> str:
        return f"{self.sku} {self.name}"

    @property
    def price(self) -> str:
        return f"${self.price_cents / 100:.2f}"
