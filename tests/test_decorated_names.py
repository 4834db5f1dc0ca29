"""Names given to ``@regions.region`` are recorded as functions are decorated (for Django's E021),
a misspelled one is logged when decorated after configure(), and a rejected configuration is the
error every use of the default regions raises (regions/manager.py)."""

from __future__ import annotations

import gc
import logging
from collections.abc import Iterator

import pytest

import regions
from regions.manager import decorated, disable


@pytest.fixture(autouse=True)
def unconfigured() -> Iterator[None]:
    regions.configure(None)
    yield
    regions.configure(None)


def test_functions_are_recorded_as_decorated_before_or_after_configure(
    caplog: pytest.LogCaptureFixture,
) -> None:
    @regions.region("functoins")
    def before(x: int) -> int:
        return x

    regions.configure({"functions": {"BACKEND": "memory"}})
    with caplog.at_level(logging.WARNING, logger="regions"):

        @regions.region("filez")
        def after(x: int) -> int:
            return x

        @regions.region("functions")
        def fine(x: int) -> int:
            return x

    prefix = f"{__name__}.test_functions_are_recorded_as_decorated_before_or_after_configure.<locals>"
    assert {k: v for k, v in decorated().items() if k.startswith(prefix)} == {
        f"{prefix}.before": "functoins",
        f"{prefix}.after": "filez",
        f"{prefix}.fine": "functions",
    }
    [record] = caplog.records  # the one decorated after configure() with a name it does not have
    assert record.getMessage() == (
        f"{prefix}.after: unknown cache region 'filez'; configured regions: 'functions'"
    )
    assert fine(2) == 2
    del before, after, fine
    gc.collect()
    assert not any(k.startswith(prefix) for k in decorated())  # recorded only while they live


def test_a_rejected_configuration_is_what_every_call_raises() -> None:
    @regions.region("functions")
    def double(x: int) -> int:
        return 2 * x

    with pytest.raises(regions.RegionError, match="not configured"):
        double(1)
    try:
        regions.configure({"functions": {"BACKEND": "memcache"}})
    except regions.ConfigurationError as exc:
        disable(exc)
    for _ in range(2):
        with pytest.raises(regions.ConfigurationError, match="unknown BACKEND 'memcache'") as info:
            double(1)
        assert (info.value.region, info.value.option) == ("functions", "BACKEND")
        assert "not configured" not in str(info.value)
    regions.configure({"functions": {"BACKEND": "memory"}})
    assert double(2) == 4  # a working configuration replaces it
    regions.configure(None)
    with pytest.raises(regions.RegionError, match="not configured"):
        double(1)  # removed on purpose: nothing was rejected
