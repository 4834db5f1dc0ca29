"""A burst of invalidations in another process drops only what its records name.

The log's reader fetches the records it has not seen in chunks (:data:`regions.sync.CHUNK` per
round trip) up to :data:`regions.sync.MAX_GAP`; before, more than 500 records in one
``sync_interval`` made every process drop all its local entries, of every function of the region.
Real processes: the burst comes from a spawned process over a real memcached server or folder.
"""

from __future__ import annotations

import multiprocessing
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from tests import sync_burst_workers as bw
from tests import sync_workers as w

INTERVAL = 0.3
WARM = 2_000


@pytest.mark.parametrize("region", ["local", "flocal", "hot", "fhot"])
@pytest.mark.parametrize("burst", [501, 1_800])
def test_a_burst_of_invalidations_drops_only_what_it_names(
    memcached_server: str, tmp_path: Path, region: str, burst: int
) -> None:
    settings: dict[str, Any] = {
        "config": w.config(memcached_server, str(tmp_path / "files"), INTERVAL),
        "prefix": "b" + uuid.uuid4().hex[:10],
        "secret": "burst-secret-" + uuid.uuid4().hex,
    }
    manager = w.build(settings)
    try:
        g, h, computed = bw.functions(manager, region)
        for x in range(WARM):
            g(x)
        for x in range(burst):
            h(x)
        assert computed == {"g": WARM, "h": burst}
        computed.clear()

        child = multiprocessing.get_context("spawn").Process(target=bw.burst, args=(settings, region, burst))
        child.start()
        child.join(120)
        assert child.exitcode == 0, "the process making the burst failed"
        time.sleep(INTERVAL + 0.2)  # this process's next read looks at the log

        for x in range(WARM):
            g(x)
        for x in range(burst):
            h(x)
        stats = manager[region].stats()
        assert computed["h"] == burst, f"the invalidated entries were served: {computed}"
        assert computed["g"] == 0, f"{computed['g']} of {WARM} entries the burst did not name were dropped"
        assert stats["resets"] == 0, stats
        assert stats["received_invalidations"] >= burst, stats
    finally:
        manager.close()
