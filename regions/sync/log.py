"""The invalidation log that keeps process-local entries coherent across processes and hosts.

A synced ``memory`` region (``sync_with``) and a ``tiered`` region keep entries in each process.
Every ``clear()``, ``invalidate(...)``, ``invalidate_all()`` and tag invalidation made in one
process is appended to a log on the shared store (memcached or a folder): a counter ``seq`` and one
record per invalidation, record ``n`` under the value ``seq`` took when it was appended. Each
process reads ``seq`` at most once per ``sync_interval`` (one round trip when nothing changed),
fetches the records it has not seen in one more, and applies them to its own entries.

Whenever continuity cannot be shown (the first read, a counter that went back or jumped by more
than :data:`MAX_GAP`, a record missing because it was evicted or lost in a restart, a record that
does not parse), the process drops all its local entries: a reset over-invalidates, never serves a
value an invalidation replaced. Records are JSON, never unpickled; a forged one can only cause a
reset. A store skips the records it wrote itself (it applied them when it made them).
"""

from __future__ import annotations

import json
import os
import secrets
import time
from collections.abc import Hashable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..backends.contract import LogStorage

#: More unseen records than this: reset instead of fetching them all.
MAX_GAP = 500
#: Seconds a record is kept on memcached: a process that did not look for longer (no reads for
#: 5 minutes) resets at its next look, and a busy log holds at most this many seconds of records.
RECORD_TTL = 300

def new_origin() -> str:
    """An id for the records of one store in one process (a forked child takes a new one)."""
    return f"{os.getpid()}-{secrets.token_hex(6)}"


# records -----------------------------------------------------------------------------------------
def _key_out(key: Hashable) -> Any:
    """A local key as JSON: a text key, or a tuple of int / str / bytes / None."""
    if isinstance(key, str):
        return key
    if isinstance(key, tuple):
        out = []
        for part in key:
            if part is None or type(part) in (int, str):
                out.append(part)
            elif type(part) is bytes:
                out.append({"b": part.hex()})
            else:
                raise TypeError(f"key part of type {type(part).__name__}")
        return {"t": out}
    raise TypeError(f"key of type {type(key).__name__}")


def _key_in(data: Any) -> Hashable:
    if isinstance(data, str):
        return data
    if isinstance(data, dict) and isinstance(data.get("t"), list):
        parts: list[Any] = []
        for part in data["t"]:
            if isinstance(part, dict):
                parts.append(bytes.fromhex(part["b"]))
            elif part is None or type(part) in (int, str):
                parts.append(part)
            else:
                raise ValueError("bad key part")
        return tuple(parts)
    raise ValueError("bad key")


def record(
    origin: str, op: str, namespace: str | None = None, key: Hashable = None, tags: list[str] | None = None
) -> bytes:
    """One invalidation by ``origin``: ``clear``, ``namespace`` (invalidate_all), ``key``, or ``tags``."""
    data: dict[str, Any] = {"o": origin, "op": op}
    if namespace is not None:
        data["ns"] = namespace
    if op == "key":
        data["k"] = _key_out(key)
    if tags is not None:
        data["tags"] = list(tags)
    return json.dumps(data, separators=(",", ":")).encode()


class Record:
    """A parsed record (``op``, ``namespace``, ``key``, ``tags``); raises ``ValueError`` if malformed."""

    __slots__ = ("origin", "op", "namespace", "key", "tags")

    def __init__(self, raw: bytes) -> None:
        data = json.loads(raw)
        if not isinstance(data, dict) or data.get("op") not in ("clear", "namespace", "key", "tags"):
            raise ValueError("not a record")
        self.origin = str(data.get("o", ""))
        self.op: str = data["op"]
        self.namespace = data.get("ns")
        if self.op in ("namespace", "key") and not isinstance(self.namespace, str):
            raise ValueError("record without a namespace")
        self.key = _key_in(data["k"]) if self.op == "key" else None
        tags = data.get("tags") if self.op == "tags" else []
        if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
            raise ValueError("bad tags")
        self.tags: list[str] = tags


# the reader --------------------------------------------------------------------------------------
class SyncLog:
    """One process's position in a log, and what it found there since its last look."""

    def __init__(self, storage: LogStorage) -> None:
        self.storage = storage
        self.seen: int | None = None
        #: Written into this store's records, which it skips when it reads them back.
        self.origin = new_origin()

    def publish(
        self, op: str, namespace: str | None = None, key: Hashable = None, tags: list[str] | None = None
    ) -> None:
        """Append one record (raises when the storage cannot be reached)."""
        self.storage.append(record(self.origin, op, namespace, key, tags))

    def changes(self) -> list[Record] | None:
        """The records of other processes appended since the last call, or ``None``: reset (drop
        every local entry). Raises when the storage cannot be reached (``seen`` is kept)."""
        head = self.storage.head()
        found = self._since(self.seen, head)  # raises before ``seen`` moves: read again next time
        self.seen = head
        return found

    def _since(self, seen: int | None, head: int) -> list[Record] | None:
        if seen is None or head < seen or head - seen > MAX_GAP:
            return None
        if head == seen:
            return []
        found = self.storage.records(seen + 1, head)
        if len(found) < head - seen:  # appended a moment ago: its counter before its record?
            time.sleep(0.002)
            found.update(self.storage.records(seen + 1, head))
            if len(found) < head - seen:
                return None
        mine = self.origin
        out = []
        try:
            for n in range(seen + 1, head + 1):
                rec = Record(found[n])
                if rec.origin != mine:
                    out.append(rec)
        except (ValueError, KeyError, TypeError, UnicodeDecodeError):
            return None
        return out
