"""App config of the example shop."""

from django.apps import AppConfig


class ShopConfig(AppConfig):
    name = "config.shop"
    label = "shop"
    verbose_name = "Example shop"
