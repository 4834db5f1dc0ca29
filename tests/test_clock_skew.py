"""An entry's life on memcached, as readers see it, does not depend on the writer's clock.

A spawned process whose ``time.time`` runs 25 s ahead, or 10 s behind, writes an entry with
TIMEOUT 2 to a real memcached (one item, a value split in parts, a tagged function's entry, or
through a tiered region); this process (true clock) reads it every 50 ms and measures how long
it is served as fresh: 2 s, within the server's whole second (both skews are far larger than the
timeout: a reader judging by the writer's clock fails either way). Before the hit asked the server
how long the item has left (``mg ... t``) and rebased the entry's time on the reader's clock, the
reader compared the writer's ``stored_at`` with its own clock: +25 s was served as fresh ~30 s
(until the default 30 s stale window ran out on the server), -10 s never.

``REGIONS_SKEW_DEADLINE`` (seconds, default 9) is how long a reader watches one entry.
"""

from __future__ import annotations

import multiprocessing
import os
import time
import uuid

import pytest

from tests import clock_skew_workers as workers

TIMEOUT = 2
DEADLINE = float(os.environ.get("REGIONS_SKEW_DEADLINE", "9"))
MISSING = object()


@pytest.mark.parametrize("kind", ["plain", "split", "tagged", "tiered"])
@pytest.mark.parametrize("skew", [25.0, -10.0], ids=["ahead-25s", "behind-10s"])
def test_an_entry_lives_its_timeout_whatever_the_writer_clock(memcached_server, make_manager, kind, skew):
    config = {
        "mc": {"BACKEND": "memcached", "LOCATION": memcached_server, "TIMEOUT": TIMEOUT},  # stale 30
        "big": {"BACKEND": "memcached", "LOCATION": memcached_server, "TIMEOUT": TIMEOUT,
                "OPTIONS": {"item_size": 1024}},
        "hot": {"BACKEND": "tiered", "TIMEOUT": TIMEOUT, "OPTIONS": {"over": "mc"}},
    }
    settings = {"config": config, "prefix": "skew" + uuid.uuid4().hex[:8], "secret": "s-" + uuid.uuid4().hex}
    reader = make_manager(config, key_prefix=settings["prefix"], secret=settings["secret"])
    item = workers.tagged_function(reader, "computed by the reader")
    region = reader["mc"]

    def fresh() -> bool:
        if kind == "plain":
            return region.get("k", MISSING) == workers.WRITTEN
        if kind == "split":
            return reader["big"].get("k", MISSING) == workers.LARGE
        if kind == "tiered":
            return reader["hot"].get("k", MISSING) == workers.WRITTEN
        hits = region.stats()["hits"]
        served = item(1)
        return served == workers.WRITTEN and region.stats()["hits"] == hits + 1

    ctx = multiprocessing.get_context("spawn")
    out = ctx.Queue()
    proc = ctx.Process(target=workers.write, args=(settings, kind, skew, out))
    proc.start()
    try:
        written_at = out.get(timeout=60)
    finally:
        proc.join(timeout=60)
    assert proc.exitcode == 0

    seen: list[tuple[float, bool]] = []
    while time.time() < written_at + DEADLINE:
        now = time.time()
        seen.append((now - written_at, fresh()))
        if not seen[-1][1]:
            break  # (a tagged reader computed and stored its own value: nothing more to watch)
        time.sleep(0.05)
    fresh_for = next((age for age, ok in seen if not ok), seen[-1][0])
    print(f"\n{kind} entry of a writer {skew:+g} s: served as fresh for {fresh_for:.2f} s")
    assert seen[0][1], f"never served as fresh (first read {seen[0][0]:.2f} s after the write)"
    assert TIMEOUT - 1 <= fresh_for <= TIMEOUT + 1, f"served as fresh {fresh_for:.2f} s, TIMEOUT {TIMEOUT}"
