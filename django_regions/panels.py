"""A django-debug-toolbar panel: the cached calls of the request, per region, and the request
region's entries (``pip install 'cache-regions[toolbar]'``)::

    DEBUG_TOOLBAR_PANELS = [*debug_toolbar.settings.PANELS_DEFAULTS, "django_regions.panels.RegionsPanel"]

Only the toolbar imports this module (``import django_regions`` never imports the toolbar). It
records with :mod:`regions.trace` between ``enable_instrumentation`` and
``disable_instrumentation``: the calls of this request's context only, nothing while no toolbar
request is under way. Cached values are never shown, not even in part: entries are listed by key
with the type and size of their value.
"""

from __future__ import annotations

import sys
from collections.abc import Hashable, Iterable
from typing import Any

from debug_toolbar.panels import Panel
from django.http import HttpRequest, HttpResponse

from regions import keys, scope, trace
from regions.region import DIRECT

from . import conf

__all__ = ["RegionsPanel", "describe"]

#: Longest key text shown; longer keys end with an ellipsis.
KEY_CHARS = 160

#: Objects looked at when sizing one value (its builtin containers are walked up to this many).
SIZE_BUDGET = 10_000

_CONTAINERS = (list, tuple, set, frozenset, dict)
_Snapshot = dict[Any, dict[Hashable, Any]]


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def _short(text: str) -> str:
    return text if len(text) <= KEY_CHARS else text[: KEY_CHARS - 1] + "…"


def _bytes(n: int) -> str:
    return f"{n} B" if n < 1024 else f"{n / 1024:.1f} KB" if n < 1024 * 1024 else f"{n / 1048576:.1f} MB"


def _deep_size(value: Any) -> tuple[int, bool]:
    """Bytes of ``value`` and of what its builtin containers hold (other objects: their own
    ``__sizeof__`` only, nothing of theirs is called), and whether the walk stopped at the budget."""
    seen: set[int] = set()
    stack, total = [value], 0
    while stack:
        if len(seen) >= SIZE_BUDGET:
            return total, True
        item = stack.pop()
        if id(item) in seen:
            continue
        seen.add(id(item))
        total += sys.getsizeof(item)
        kind = type(item)
        if kind is dict:
            stack.extend(item.keys())
            stack.extend(item.values())
        elif kind in _CONTAINERS:
            stack.extend(item)
    return total, False


def describe(value: Any) -> tuple[str, str]:
    """``(type, size)`` of a cached value, e.g. ``("list", "16 items, 2.3 KB")``; never its content.

    Lengths are read from builtin types only (``len()`` of a QuerySet would run it)."""
    kind = type(value)
    name = kind.__qualname__ if kind.__module__ == "builtins" else f"{kind.__module__}.{kind.__qualname__}"
    size, partial = _deep_size(value)
    text = ("≥ " if partial else "") + _bytes(size)
    if kind in (str, bytes, bytearray):
        unit = "chars" if kind is str else "bytes"
        text = f"{len(value)} {unit}, {text}"
    elif kind in _CONTAINERS:
        text = f"{_plural(len(value), 'item')}, {text}"
    return name, text


class _Recorder(trace.Recorder):
    """Also keeps the request region's entries after each call: the scope may be closed (its data
    dropped) before the toolbar asks, when its middleware runs outside RequestRegionMiddleware."""

    def __init__(self) -> None:
        super().__init__()
        self.entries: _Snapshot = {}
        self._count = -1
        self._request_regions = set(_request_regions())

    def finished(self, call: trace.Call) -> None:
        data = scope.CURRENT.get()
        if data is not None and (len(data) != self._count or call.region in self._request_regions):
            self.keep(data)

    def keep(self, data: _Snapshot) -> None:
        try:  # the scope's threads may add entries meanwhile: then the next call keeps them
            self.entries = {slot: dict(entries) for slot, entries in list(data.items())}
        except RuntimeError:
            return
        self._count = len(data)


def _request_regions() -> dict[str, Any]:
    manager = conf.manager()
    if manager is None:
        return {}
    return {r.name: r for r in manager.regions() if r.backend == "request"}


def _key_text(key: Hashable) -> str:
    """A key as the calls table shows it: the argument values of in-process keys are encoded the
    way text keys are (``("tea",)`` -> ``s3:tea``)."""
    if isinstance(key, str):
        return key
    try:
        return ",".join(map(keys.encode, key))  # type: ignore[call-overload]
    except Exception:
        return repr(key)


def _entries(snapshot: _Snapshot) -> list[dict[str, Any]]:
    """The rows of the request-region table: region, function, key, value type and size."""
    stores = {id(r.store): r for r in _request_regions().values()}
    rows = []
    for slot, entries in snapshot.items():  # slot: regions.backends.request.Slot
        region, namespace = stores.get(slot.store), slot.namespace
        prefix = region.namespace_name("") if region is not None else ""
        function = namespace[len(prefix) :] if namespace.startswith(prefix) else namespace
        for key, entry in entries.items():
            kind, size = describe(entry[2]) if type(entry) is tuple and len(entry) == 3 else ("?", "")
            rows.append(
                {
                    "region": region.name if region is not None else "(another manager)",
                    "function": "(set directly)" if function == DIRECT else function,
                    "key": _short(_key_text(key)),
                    "type": kind,
                    "size": size,
                }
            )
    return rows


def _totals(calls: Iterable[trace.Call]) -> list[dict[str, Any]]:
    rows = []
    for name, row in sorted(trace.totals(calls).items()):
        seconds = row.pop("seconds")
        rows.append({"region": name, **row, "ms": seconds * 1e3})
    return rows


def _call(call: trace.Call) -> dict[str, Any]:
    return {
        "region": call.region,
        "function": call.function,
        "key": _short(call.key),
        "outcome": call.outcome,
        "ms": call.seconds * 1e3,
    }


class RegionsPanel(Panel):
    """Cached calls of the request (region, function, key, outcome, ms), totals per region and
    the request region's entries (key, value type and size)."""

    title = "Cache regions"
    nav_icon = "debug_toolbar/img/cache.svg"  # type: ignore[assignment]  # the toolbar's own icon
    template = "django_regions/panel.html"
    is_async = True

    _recorder: _Recorder | None = None

    @property
    def nav_subtitle(self) -> str:
        stats = self.get_stats()
        calls = stats.get("calls", [])
        hits = sum(1 for c in calls if c["outcome"] == "hit")
        ms = sum(c["ms"] for c in calls)
        return f"{_plural(len(calls), 'call')}, {_plural(hits, 'hit')}, {ms:.1f} ms"

    def enable_instrumentation(self) -> None:
        if self._recorder is None:
            self._recorder = _Recorder().start()

    def disable_instrumentation(self) -> None:
        if self._recorder is not None:
            self._recorder.stop()

    def generate_stats(self, request: HttpRequest, response: HttpResponse) -> None:
        recorder, self._recorder = self._recorder, None
        if recorder is None:
            return
        recorder.stop()
        data = scope.CURRENT.get()
        if data is not None:  # the scope is still open: its final entries
            recorder.keep(data)
        # else: as after the last cached call (the toolbar's middleware runs outside the scope)
        calls = list(recorder.calls)
        self.record_stats(
            {
                "calls": [_call(c) for c in calls],
                "totals": _totals(calls),
                "entries": _entries(recorder.entries),
                "request_regions": sorted(_request_regions()),
                "final": data is not None,
            }
        )

    def generate_server_timing(self, request: HttpRequest, response: HttpResponse) -> None:
        stats = self.get_stats()
        calls = stats.get("calls", [])
        title = f"Cache regions {len(calls)} calls"
        self.record_server_timing("total_time", title, round(sum(c["ms"] for c in calls), 3))
