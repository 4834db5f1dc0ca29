"""Request scopes: the lifetime of ``request`` regions.

The current scope lives in a :class:`contextvars.ContextVar`, so each thread and each asyncio task
sees its own scope (asyncio copies the context per task). Data is dropped when the scope ends;
nothing global keeps it.
"""

from __future__ import annotations

import contextvars
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from contextvars import ContextVar, Token
from types import TracebackType
from typing import Any, TypeVar

T = TypeVar("T")

#: The data of the current scope: a dict of per-namespace dicts, or ``None`` outside any scope.
CURRENT: ContextVar[dict[Any, dict[Any, Any]] | None] = ContextVar("regions_request_scope", default=None)


class request_scope:  # noqa: N801 - used like a function: ``with request_scope():``
    """Open a fresh request scope for ``with`` or ``async with``.

    Inside it, ``request`` regions cache; outside, their functions run uncached. Scopes nest: an
    inner scope starts empty and the outer one is back when it ends.
    """

    __slots__ = ("data", "_token")

    def __init__(self) -> None:
        self.data: dict[Any, dict[Any, Any]] = {}
        self._token: Token[dict[Any, dict[Any, Any]] | None] | None = None

    def __enter__(self) -> request_scope:
        if self._token is not None:
            raise RuntimeError("this request_scope is already open; create a new one")
        self._token = CURRENT.set(self.data)
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    async def __aenter__(self) -> request_scope:
        return self.__enter__()

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        """Leave the scope and drop its data (also reached by threads that still hold it)."""
        token, self._token = self._token, None
        if token is not None:
            try:
                CURRENT.reset(token)
            except ValueError:  # closed from another context (e.g. a streaming response's last chunk)
                pass
        self.data.clear()

    def __len__(self) -> int:
        """Number of entries cached in this scope."""
        return sum(len(d) for d in self.data.values())


def in_request_scope() -> bool:
    return CURRENT.get() is not None


class ScopedThreadPoolExecutor(ThreadPoolExecutor):
    """A :class:`ThreadPoolExecutor` whose tasks run in the submitting caller's context.

    A plain executor's worker threads start with an empty context, so request regions called from
    them run uncached. Tasks submitted here see the submitter's request scope (and every other
    context variable), like :func:`asyncio.to_thread` does.
    """

    def submit(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> Future[T]:
        context = contextvars.copy_context()
        return super().submit(context.run, fn, *args, **kwargs)
