"""The Django app signs entries with a key derived from SECRET_KEY, and reads entries signed under
SECRET_KEY_FALLBACKS: rotating SECRET_KEY as Django documents keeps the cache."""

from __future__ import annotations

from typing import Any

import pytest

import regions
from django_regions import conf


@pytest.mark.parametrize("name", ["functions", "files"])
def test_rotating_secret_key_with_fallbacks_keeps_entries(settings: Any, name: str) -> None:
    settings.SECRET_KEY = "first-secret-key-" + "x" * 40
    settings.SECRET_KEY_FALLBACKS = []
    regions.get_manager()[name].set("k", "v")

    settings.SECRET_KEY = "second-secret-key-" + "y" * 40
    settings.SECRET_KEY_FALLBACKS = ["first-secret-key-" + "x" * 40]
    region = regions.get_manager()[name]
    assert region.get("k") == "v"  # signed under the fallback: still read

    settings.SECRET_KEY_FALLBACKS = []  # the old key retired: its entries are rejected, not read
    region = regions.get_manager()[name]
    assert region.get("k") is None
    assert region.stats()["rejected"] == 1


def test_the_signing_secret_is_derived_not_the_secret_key(settings: Any) -> None:
    settings.SECRET_KEY = "the-project-secret-key-" + "z" * 40
    secret, fallbacks = conf.signing_secrets()
    assert secret is not None and settings.SECRET_KEY not in secret and fallbacks == []
    assert regions.get_manager()["functions"].store.signer.keyed
