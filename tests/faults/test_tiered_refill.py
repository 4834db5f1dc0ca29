"""A tiered region's reader never refills its local tier from a shared tier it reads with counters
older than the invalidation it just applied.

A writer whose link to memcached drops while its namespace's generation counter is due to be read
cannot even build the key it invalidates: the shared tier's delete becomes a bump of the namespace
(every key of it), replayed when the link heals, before the log record of the key. A reader that
applied that record used to read the shared tier at once with the counters it had read less than
``sync_interval`` ago: it found the old entry (still there under the old generation), stored it in
its local tier, and served it until TIMEOUT. Seen under CPU load in
tests/faults/test_synced_faults.py (memcached, ``hot``, dropped and paused); made certain here by
giving the writer a short ``sync_interval`` on the shared region and the reader a long one.

Two managers in one process stand for two processes: each has its own stores and counters, and
only the memcached server and the log on it are shared.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from typing import Any

import regions
from tests.faults.conftest import FaultyMemcached
from tests.faults.proxy import Proxy


def config(address: str, shared_sync: float) -> dict[str, Any]:
    return {
        "functions": {"BACKEND": "memcached", "LOCATION": address, "TIMEOUT": 300,
                      "OPTIONS": {"timeout": 0.3, "connect_timeout": 0.3, "retry_interval": 0.1,
                                  "sync_interval": shared_sync}},
        "hot": {"BACKEND": "tiered", "OPTIONS": {"over": "functions", "sync_interval": 0.05}},
    }


def test_a_reader_does_not_refill_from_counters_older_than_an_invalidation(
    faulty_memcached: Callable[..., FaultyMemcached],
) -> None:
    server = faulty_memcached()
    link = Proxy(server.address)
    prefix, secret = "tr" + uuid.uuid4().hex[:8], "s" * 20 + uuid.uuid4().hex
    writer = regions.CacheManager(config(link.address, 0.05), key_prefix=prefix, secret=secret)
    reader = regions.CacheManager(config(server.address, 60.0), key_prefix=prefix, secret=secret)
    version = {"now": 1}

    def reading(manager: regions.CacheManager) -> Any:
        @manager.region("hot")
        def value(x: int) -> tuple[int, int]:
            return (x, version["now"])

        return value

    write, read = reading(writer), reading(reader)
    try:
        assert write(2) == (2, 1)  # stored in the shared tier
        assert read(2) == (2, 1)  # from the shared tier; the reader's counters read now
        time.sleep(0.1)  # the writer's counters are due: the next key it builds reads them
        link.mode = "drop"
        version["now"] = 2
        assert write.invalidate(2) is False  # neither the key nor the record reached the server
        link.mode = "pass"
        deadline = time.monotonic() + 10
        store = writer["functions"].store
        while any(h["down"] or h["pending"] for h in store.health()) and time.monotonic() < deadline:
            time.sleep(0.02)
        assert not any(h["down"] or h["pending"] for h in store.health()), store.health()
        seen = []
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline:
            seen.append(read(2))
            if seen[-1] == (2, 2):
                break
            time.sleep(0.02)
        assert seen[-1] == (2, 2), (
            f"the reader served the invalidated value {seen[-1]} for 3 s ({len(seen)} reads): it refilled "
            f"its local tier from the shared tier under counters older than the invalidation"
        )
        assert reader["hot"].stats()["received_invalidations"] >= 1
    finally:
        writer.close()
        reader.close()
        link.close()
