"""An invalidation made while a value is being computed wins over that computation.

The computation read its data before the invalidation; storing its result afterwards would serve
replaced data for the entry's whole lifetime. The function is held inside its computation by an
event (not a sleep), so the invalidation lands in the middle every time.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest

KINDS = ["invalidate", "invalidate_all", "clear", "refresh", "delete_other"]


def _invalidate(kind: str, f: Any, region: Any) -> None:
    if kind == "invalidate":
        f.invalidate(1)
    elif kind == "invalidate_all":
        f.invalidate_all()
    elif kind == "clear":
        region.clear()
    elif kind == "refresh":
        f.refresh(1)
    elif kind == "delete_other":
        region.delete("another key")  # any invalidation: this process cannot tell what it covers


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("backend", ["memory", "file", "memcached"])
def test_invalidation_during_a_computation_is_not_overwritten(backend, kind, region_config, make_manager):
    manager = make_manager({"r": region_config(backend, TIMEOUT=300)})
    region = manager["r"]
    data = {"price": "old"}
    inside, release = threading.Event(), threading.Event()

    @manager.region("r")
    def price(item: int) -> str:
        seen = data["price"]  # the computation reads its data ...
        if threading.current_thread().name == "slow":
            inside.set()
            assert release.wait(10)  # ... and is still running when the data changes
        return seen

    results: list[str] = []
    slow = threading.Thread(target=lambda: results.append(price(1)), name="slow")
    slow.start()
    assert inside.wait(10)
    data["price"] = "new"
    _invalidate(kind, price, region)
    release.set()
    slow.join(10)
    assert results == ["old"]  # that caller gets what it computed
    assert price(1) == "new", f"{kind} during the computation was overwritten by its result"


def test_async_invalidation_during_a_computation_is_not_overwritten(region_config, make_manager):
    manager = make_manager({"r": region_config("memcached", TIMEOUT=300)})
    data = {"price": "old"}

    async def scenario() -> tuple[str, str]:
        inside, release = asyncio.Event(), asyncio.Event()
        first = [True]

        @manager.region("r")
        async def price(item: int) -> str:
            seen = data["price"]
            if first[0]:
                first[0] = False
                inside.set()
                await release.wait()
            return seen

        task = asyncio.create_task(price(1))
        await asyncio.wait_for(inside.wait(), 10)
        data["price"] = "new"
        assert await price.invalidate(1) is True
        release.set()
        return await task, await price(1)

    assert asyncio.run(scenario()) == ("old", "new")
