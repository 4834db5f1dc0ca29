"""App config: builds the default regions manager when Django starts and on settings changes."""

from __future__ import annotations

from typing import Any

from django.apps import AppConfig
from django.core.signals import setting_changed


def _on_setting_changed(*, setting: str, **_: Any) -> None:
    """Rebuild the default manager when its settings (conf.WATCHED_SETTINGS) change."""
    from django_regions import conf

    if setting in conf.WATCHED_SETTINGS:
        conf.build()


class DjangoRegionsConfig(AppConfig):
    """``INSTALLED_APPS += ["django_regions"]``."""

    name = "django_regions"
    verbose_name = "Cache regions"

    def ready(self) -> None:
        from django_regions import checks, conf, keys, signals

        keys.register()
        signals.register()  # tags from models, invalidated when their rows change
        checks.register()
        conf.build()
        for notice in conf.get_notices():
            conf.logger.warning("%s", notice)
        setting_changed.connect(_on_setting_changed, dispatch_uid="django_regions.setting_changed")
