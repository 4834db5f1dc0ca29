"""Group (e) of ``benchmarks/run.py``: hits of process-local tiers and of tagged functions.

Built here, timed and reported by ``run.py`` like the other groups (interleaved rounds, floor in the
same run). ``run.py`` passes what the groups share (``make_manager``, the payload), so this module
does not import it (it runs as ``__main__``).

The cases, all called as ``function(7)`` and all hits:

* the floor: a plain dict lookup in a function (the cheapest in-process hit written by hand);
* a plain ``memory`` region hit: the reference of the targets (and an A/A twin of it);
* a ``memory`` region with ``sync_with`` a memcached region (``sync_interval`` 1.0): a dict lookup
  plus a clock comparison, one read of the invalidation log per second (<= 1.5x memory);
* a ``tiered`` region's local hit, over the memcached region (<= 2x memory) and over a file region;
* a ``memory`` region hit with 2 tags (<= 2x memory);
* memcached region hits without tags and with 2 tags (and an A/A twin of the untagged one).

After the timing, ``count`` reads the memcached server's ``stats`` before and after
``COUNTED`` hits of each memcached case: what a hit costs the server, in keys and in commands.
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

#: Hits per counted case (server stats read before and after), and windows tried at most.
COUNTED = 1000
ATTEMPTS = 5
#: The reference of the targets: the plain memory region hit.
MEMORY = "regions memory region"
FLOOR = "dict lookup in a function"
SYNCED = "memory + sync_with memcached (<= 1.5x mem)"
TIERED_MC = "tiered over memcached, local (<= 2x mem)"
TIERED_FILE = "tiered over file, local hit"
MEMORY_TAGS = "memory region, 2 tags (<= 2x mem)"
MEMORY_AGAIN = "memory region again (A/A)"
MC = "memcached region, no tags"
MC_TAGS = "memcached region, 2 tags"
MC_AGAIN = "memcached region, no tags again (A/A)"


@dataclass
class Tiers:
    #: (name, call, note): the floor first; ``note`` is shown in the target column
    cases: list[tuple[str, Callable[[], object], str]]
    #: (label, case, reference case, max ratio or None): paired per-round ratios under the table
    versus: list[tuple[str, str, str, float | None]]
    #: (region, case name): every timed call must be a hit (run.check_hits)
    checks: list[tuple[Any, str]]
    #: after the timing: (notes, JSON rows) of the memcached reads per hit
    count: Callable[[], tuple[list[str], list[dict]]] = field(repr=False, default=lambda: ([], []))
    #: then: stops the manager's deployment-stats thread (before the server stops) and its connections
    close: Callable[[], None] = field(repr=False, default=lambda: None)


def build(address: str, server: tuple[str, int], folder: Path, make_manager: Callable[..., Any],
          payload: Any) -> Tiers:
    interval = {"sync_interval": 1.0}
    manager = make_manager({
        "shared": {"BACKEND": "memcached", "LOCATION": address, "TIMEOUT": 3600},
        "files": {"BACKEND": "file", "LOCATION": str(folder / "tiers"), "TIMEOUT": None},
        "mem": {"BACKEND": "memory"},
        "synced": {"BACKEND": "memory", "OPTIONS": {"sync_with": "shared", **interval}},
        "hot": {"BACKEND": "tiered", "OPTIONS": {"over": "shared", **interval}},
        "fhot": {"BACKEND": "tiered", "OPTIONS": {"over": "files", **interval}},
    }, key_prefix="tiers")

    made = itertools.count()

    def cached(region: str, tags: bool = False) -> Any:  # a decorated function (CachedFunction)
        # A function of its own for every case (keys of its own), decorated as an application does.
        def product(item: int) -> object:
            return payload

        product.__qualname__ = f"product_{region}_{next(made)}"
        if tags:
            return manager.region(region, tags=lambda item: [f"item:{item}", "items"])(product)
        return manager.region(region)(product)

    table = {7: payload}

    def dict_lookup(item: int) -> object:
        return table[item]

    funcs = {
        MEMORY: cached("mem"), MEMORY_AGAIN: cached("mem"), SYNCED: cached("synced"),
        TIERED_MC: cached("hot"), TIERED_FILE: cached("fhot"), MEMORY_TAGS: cached("mem", tags=True),
        MC: cached("shared"), MC_TAGS: cached("shared", tags=True), MC_AGAIN: cached("shared"),
    }
    for func in funcs.values():
        assert func(7) == payload and func(7) == payload  # stored, and read back: hits from now on
    for name in ("mem", "synced", "hot", "fhot", "shared"):
        manager[name].reset_stats()

    targeted = {SYNCED, TIERED_MC, MEMORY_TAGS}
    cases: list[tuple[str, Callable[[], object], str]] = [(FLOOR, functools.partial(dict_lookup, 7), "floor")]
    cases += [(name, functools.partial(func, 7), "see below" if name in targeted else "reference")
              for name, func in funcs.items()]
    versus: list[tuple[str, str, str, float | None]] = [
        ("ratio synced memory / memory region", SYNCED, MEMORY, 1.5),
        ("ratio tiered over memcached / memory region", TIERED_MC, MEMORY, 2.0),
        ("ratio tiered over file / memory region", TIERED_FILE, MEMORY, None),
        ("ratio memory 2 tags / memory region", MEMORY_TAGS, MEMORY, 2.0),
        ("ratio memory again / memory region (A/A)", MEMORY_AGAIN, MEMORY, None),
        ("ratio memcached 2 tags / no tags", MC_TAGS, MC, None),
        ("ratio memcached again / no tags (A/A)", MC_AGAIN, MC, None),
    ]
    checks = [(manager[region], what) for region, what in (
        ("mem", "memory region cases"), ("synced", SYNCED), ("hot", TIERED_MC), ("fhot", TIERED_FILE),
        ("shared", "memcached region cases"))]

    def count() -> tuple[list[str], list[dict]]:
        """Server stats before and after ``COUNTED`` hits of each case that reads memcached."""
        tag_keys = manager["shared"].store.tags.keys(["item:7", "items"])
        lines = [f"memcached per hit: server stats before and after {COUNTED:,} hits of each (after timing)"]
        rows, commands = [], []
        for name, keys in ((MC, [funcs[MC].cache_key(7)]),
                           (MC_TAGS, [funcs[MC_TAGS].cache_key(7), *tag_keys])):
            per_hit = server_deltas(server, functools.partial(funcs[name], 7), COUNTED)
            # one send: the entry's meta get (value, seconds left, key echoed), and each counter's
            entry = keys[0].encode()
            counters = b"".join(b"mg " + k.encode() + b" v\r\n" for k in keys[1:])
            line = len(b"mg " + entry + b" v t k\r\n" + counters)
            one = abs(per_hit["bytes_read"] - line) < 3
            commands.append(one)
            label = name.split(", ")[1] + ":"
            lines.append(f"    {label:<8} cmd_get {per_hit['cmd_get']:.3f}, get_hits+get_misses "
                         f"{per_hit['lookups']:.3f}, cmd_set {per_hit['cmd_set']:.3f}, bytes read "
                         f"{per_hit['bytes_read']:.1f} = one send: 'mg' of the entry"
                         f"{f' + mg of its {len(keys) - 1} counters' if len(keys) > 1 else ''} ({line} B)")
            rows.append({"case": name, "hits": COUNTED, **per_hit, "get_line_bytes": line,
                         "get_commands_per_hit": 1 if one else None})
        verdict = "1 round trip per hit for both" if all(commands) else "NOT one round trip per hit"
        lines.append(f"    -> {verdict} (cmd_get and get_hits+get_misses count keys, not commands, an 'mg'")
        lines.append("       counting one; a 2nd round trip would add >= 6 bytes read: 'get ' and CRLF)")
        local = []
        for name in (SYNCED, TIERED_MC):
            per_hit = server_deltas(server, functools.partial(funcs[name], 7), COUNTED)
            local.append(f"{per_hit['cmd_get']:.3f}")
            rows.append({"case": name, "hits": COUNTED, **per_hit})
        lines.append(f"    synced memory, tiered over memcached: cmd_get {' and '.join(local)} per hit "
                     "(the log, read once per sync_interval)")
        return ["\n".join(lines)], rows

    return Tiers(cases, versus, checks, count, manager.close)


def server_deltas(server: tuple[str, int], call: Callable[[], object], n: int) -> dict[str, float]:
    """What ``n`` calls cost the memcached server, per call: keys asked (``cmd_get``), keys found or
    not (``get_hits`` + ``get_misses``), sets, and bytes it read (the ``stats`` command excluded).

    A hit stores nothing, so a window in which something was set saw other traffic (every manager's
    deployment-stats thread publishes to this server every few seconds): it is counted again, up to
    ``ATTEMPTS`` times (``windows`` says how many it took). One call comes first, outside the count:
    a periodic re-read of generation counters falls due then, not in the window."""
    from pymemcache.client.base import Client

    client = Client(server, connect_timeout=1.0, timeout=1.0)
    try:
        windows = 0
        while True:
            windows += 1
            call()
            before = client.stats()
            for _ in range(n):
                call()
            after = client.stats()
            if after[b"cmd_set"] == before[b"cmd_set"] or windows == ATTEMPTS:
                break
    finally:
        client.close()

    def delta(stat: str) -> int:
        return after[stat.encode()] - before[stat.encode()]

    return {
        "cmd_get": delta("cmd_get") / n,
        "lookups": (delta("get_hits") + delta("get_misses")) / n,
        "cmd_set": delta("cmd_set") / n,
        "bytes_read": (delta("bytes_read") - len(b"stats\r\n")) / n,
        "windows": windows,
    }
