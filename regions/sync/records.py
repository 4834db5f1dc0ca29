"""The invalidation log's record format: one invalidation as a small JSON object.

``{"v": 1, "o": origin, "op": ..., "ns": ..., "k": ..., "tags": [...]}``: ``v`` the format
version, ``o`` the store that wrote it, ``op`` one of ``clear``, ``namespace`` (invalidate_all),
``key`` or ``tags``. Records are JSON, never unpickled: one of another version (or none), or one
that does not parse, makes the reader reset (never a guess), so a forged record can at most drop
entries.
"""

from __future__ import annotations

import json
from collections.abc import Hashable
from typing import Any

#: The format written, and the only one read.
FORMAT_VERSION = 1
OPS = ("clear", "namespace", "key", "tags")


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
    """The local key :func:`_key_out` wrote; ``ValueError`` when it is not one."""
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
    data: dict[str, Any] = {"v": FORMAT_VERSION, "o": origin, "op": op}
    if namespace is not None:
        data["ns"] = namespace
    if op == "key":
        data["k"] = _key_out(key)
    if tags is not None:
        data["tags"] = list(tags)
    return json.dumps(data, separators=(",", ":")).encode()


class Record:
    """A parsed record (``origin``, ``op``, ``namespace``, ``key``, ``tags``); raises ``ValueError``
    (or ``KeyError``, ``TypeError``) if malformed or of another :data:`FORMAT_VERSION`."""

    __slots__ = ("origin", "op", "namespace", "key", "tags")

    def __init__(self, raw: bytes) -> None:
        try:
            data = json.loads(raw)
        except RecursionError:  # nested too deep to be a record
            raise ValueError("not a record") from None
        if not isinstance(data, dict):
            raise ValueError("not a record")
        version = data.get("v")
        if type(version) is not int or version != FORMAT_VERSION:  # (``true == 1`` is no version)
            raise ValueError(f"record format {version!r}")
        if data.get("op") not in OPS:
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
