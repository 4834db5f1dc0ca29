"""What :mod:`regions.fleet` keeps on a shared store: one entry ``p:<process id>`` of figures per
process, and a membership entry (process id -> last seen, lifetime of its figures), all in the
store's namespace ``<identity>:~fleet`` and written with ``set_entry`` (signed)."""

from __future__ import annotations

import time
from typing import Any

from .backends.contract import BOOKKEEPING, Backend, is_fresh, make_entry
from .signing import RejectedEntry

#: A process's figures count for this many of its publish intervals after its last publish.
EXPIRE_AFTER = 3
#: Namespace (after the store's identity) of the figures: no function's module starts with ``~``.
NAMESPACE = BOOKKEEPING
MEMBERS = "members"
#: Format of what is stored here (plain dicts, tuples and numbers): entries of another format are
#: read as absent.
FORMAT = 1
#: Lifetime of the membership entry (rewritten while any process publishes).
MEMBERS_TTL = 24 * 3600.0


def post(ns: Backend, pid: str, figures: dict[str, dict[str, float]], every: float) -> None:
    """Write ``pid``'s figures, and keep the membership current by read-modify-write (a process
    lost to a concurrent writer adds itself again at its next post); drops ended processes."""
    ttl = every * EXPIRE_AFTER
    now = time.time()
    ns.set_entry(f"p:{pid}", make_entry({"v": FORMAT, "at": now, "regions": figures}, ttl))
    found = members(ns)
    seen = found.get(pid)
    live = {other: m for other, m in found.items() if m[0] + 2 * m[1] > now}
    if seen is None or now - seen[0] > ttl / 2 or len(live) < len(found):
        live[pid] = (now, ttl)
        ns.set_entry(MEMBERS, make_entry({"v": FORMAT, "members": live}, MEMBERS_TTL))
        for ended in set(found) - set(live):  # ended processes: their figures go too
            try:
                ns.delete_entry(f"p:{ended}")
            except Exception:
                pass  # expired anyway; removed by a later prune or a cull


def members(ns: Backend) -> dict[str, tuple[float, float]]:
    """Process id -> (last seen, lifetime of its figures); empty when missing or not ours."""
    try:
        entry = ns.get_entry(MEMBERS)
    except RejectedEntry:
        return {}
    stored = entry[2] if entry is not None else None
    found = stored.get("members") if isinstance(stored, dict) and stored.get("v") == FORMAT else None
    if not isinstance(found, dict):
        return {}
    return {
        pid: (float(m[0]), float(m[1])) for pid, m in found.items()
        if isinstance(pid, str) and isinstance(m, tuple) and len(m) == 2
        and all(isinstance(x, int | float) for x in m)
    }


def read(ns: Backend, skip: str) -> dict[str, dict[str, Any]]:
    """Figures (by region name) of every process but ``skip`` whose entry is fresh; raises when the
    store fails."""
    found: dict[str, dict[str, Any]] = {}
    for pid in members(ns):
        if pid == skip:
            continue
        try:
            entry = ns.get_entry(f"p:{pid}")
        except RejectedEntry:
            continue
        if entry is None or not is_fresh(entry, time.time()):
            continue
        payload = entry[2]
        if isinstance(payload, dict) and payload.get("v") == FORMAT and type(payload.get("regions")) is dict:
            found[pid] = payload["regions"]
    return found
