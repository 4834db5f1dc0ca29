"""``RequestRegionMiddleware``: one fresh :func:`regions.request_scope` per request (WSGI and ASGI).

The scope opens before the view runs and closes when the response is returned, when the view
raises, or — for a ``StreamingHttpResponse``/``FileResponse`` — when the body has been streamed
(or the response is closed early), so request-region values stay readable while streaming.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

from asgiref.sync import iscoroutinefunction, markcoroutinefunction, sync_to_async
from django.conf import settings
from django.http import HttpRequest, HttpResponseBase
from django.utils.module_loading import import_string

import regions
from django_regions import conf

_END = object()


class RequestRegions:
    """``request.regions``: get/set/delete/get_or_create on the request-backend region.

    ``request.regions["functions"]`` returns any other configured region.
    """

    def __init__(self, manager: regions.CacheManager | None) -> None:
        self._manager = manager

    @property
    def region(self) -> Any:
        """The request-backend region (the first configured one)."""
        if self._manager is not None:
            for name in self._manager:
                if self._manager[name].backend == "request":
                    return self._manager[name]
        raise regions.RegionError(
            "no region with BACKEND 'request' is configured in CACHE_REGIONS; "
            "add e.g. 'request': {'BACKEND': 'request'}"
        )

    def __getitem__(self, name: str) -> Any:
        if self._manager is None:
            regions.get_manager()  # raises why: the settings it rejected, or that none are configured
            raise regions.RegionError("regions are not configured (see manage.py check)")
        return self._manager[name]

    def get(self, key: Any, default: Any = None) -> Any:
        return self.region.get(key, default)

    def set(self, key: Any, value: Any, *args: Any, **kwargs: Any) -> None:
        self.region.set(key, value, *args, **kwargs)

    def delete(self, key: Any) -> None:
        self.region.delete(key)

    def get_or_create(self, key: Any, creator: Callable[[], Any], *args: Any, **kwargs: Any) -> Any:
        return self.region.get_or_create(key, creator, *args, **kwargs)

    def count(self) -> int | None:
        return self.region.count()


class _OpenScope:
    """A request scope entered now; :meth:`close` may be called any number of times, from any context."""

    def __init__(self) -> None:
        self._scope = regions.request_scope()
        self._scope.__enter__()

    def close(self, exc: BaseException | None = None) -> None:
        # request_scope.close() is idempotent and drops the data even from another context
        # (e.g. a streaming body finished in a worker thread).
        self._scope.close()


class _ClosingIterator:
    """Wraps sync streaming content; closes the scope when exhausted, on error, or on close()."""

    def __init__(self, content: Iterator[Any], scope: _OpenScope) -> None:
        self._it = iter(content)
        self._scope = scope

    def __iter__(self) -> _ClosingIterator:
        return self

    def __next__(self) -> Any:
        try:
            return next(self._it)
        except BaseException as exc:
            self._scope.close(None if isinstance(exc, StopIteration) else exc)
            raise

    def close(self) -> None:
        """Called by ``HttpResponse.close()``, also when the body was never (fully) iterated."""
        self._scope.close()


class _AsyncClosingIterator:
    """Async streaming content (or sync content bridged under ASGI), closed like _ClosingIterator.

    Sync chunks are pulled with ``sync_to_async`` one at a time, so the scope is closed in the
    request's own context instead of in the worker thread Django would otherwise consume it in.
    """

    def __init__(self, content: Any, scope: _OpenScope) -> None:
        self._scope = scope
        if hasattr(content, "__aiter__"):
            self._ait: AsyncIterator[Any] | None = aiter(content)
            self._it: Iterator[Any] | None = None
        else:
            self._ait = None
            self._it = iter(content)
            self._next = sync_to_async(next, thread_sensitive=True)

    def __aiter__(self) -> _AsyncClosingIterator:
        return self

    async def __anext__(self) -> Any:
        try:
            if self._ait is not None:
                return await anext(self._ait)
            chunk = await self._next(self._it, _END)  # type: ignore[call-arg, arg-type]
        except BaseException as exc:
            self._scope.close(None if isinstance(exc, StopAsyncIteration) else exc)
            raise
        if chunk is _END:
            self._scope.close()
            raise StopAsyncIteration
        return chunk

    def close(self) -> None:
        self._scope.close()


class RequestRegionMiddleware:
    """Opens a fresh request scope per request and sets ``request.regions``. Sync and async capable."""

    sync_capable = True
    async_capable = True

    def __init__(self, get_response: Callable[[HttpRequest], Any]) -> None:
        self.get_response = get_response
        self.async_mode = iscoroutinefunction(get_response)
        if self.async_mode:
            markcoroutinefunction(self)

    def __call__(self, request: HttpRequest) -> Any:
        if self.async_mode:
            return self.__acall__(request)
        scope = self._open(request)
        try:
            response = self.get_response(request)
        except BaseException as exc:
            scope.close(exc)
            raise
        return self._finish(response, scope, async_mode=False)

    async def __acall__(self, request: HttpRequest) -> Any:
        scope = self._open(request)
        try:
            response = await self.get_response(request)
        except BaseException as exc:
            scope.close(exc)
            raise
        return self._finish(response, scope, async_mode=True)

    @staticmethod
    def _open(request: HttpRequest) -> _OpenScope:
        scope = _OpenScope()
        request.regions = RequestRegions(conf.manager())  # type: ignore[attr-defined]
        return scope

    @staticmethod
    def _finish(response: HttpResponseBase, scope: _OpenScope, *, async_mode: bool) -> HttpResponseBase:
        if not getattr(response, "streaming", False):
            scope.close()
            return response
        content = response.streaming_content  # type: ignore[attr-defined]
        if async_mode or getattr(response, "is_async", False):
            response.streaming_content = _AsyncClosingIterator(content, scope)  # type: ignore[attr-defined]
        else:
            response.streaming_content = _ClosingIterator(content, scope)  # type: ignore[attr-defined]
        return response


def installed() -> bool:
    """Whether :class:`RequestRegionMiddleware` (or a subclass) is in ``MIDDLEWARE``."""
    for path in getattr(settings, "MIDDLEWARE", None) or []:
        if path == conf.MIDDLEWARE_PATH:
            return True
        try:
            cls = import_string(path)
        except ImportError:
            continue
        if isinstance(cls, type) and issubclass(cls, RequestRegionMiddleware):
            return True
    return False


__all__ = ["RequestRegionMiddleware", "RequestRegions"]
