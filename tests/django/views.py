"""Test-only views that fill the request region and report what they saw."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator

from django.http import HttpRequest, JsonResponse, StreamingHttpResponse

import regions
from regions import region


@region("request")
def square(i: int) -> int:
    """Counts its real calls in the request region, so a response tells how many ran."""
    counter = regions.get_manager()["request"]
    counter.set("computed", counter.get("computed", 0) + 1)
    return i * i


def fill(request: HttpRequest) -> JsonResponse:
    """Store ``?token`` and ``n`` values; call a request-cached function 3 times per key."""
    seen_before = request.regions.get("token")  # type: ignore[attr-defined]
    token = request.GET.get("token", "")
    n = int(request.GET.get("n", "10"))
    request.regions.set("token", token)  # type: ignore[attr-defined]
    for i in range(n):
        request.regions.set(("value", i), f"{token}-{i}" * 4)  # type: ignore[attr-defined]
    squares = [square(i % n) for i in range(3 * n)]
    return JsonResponse(
        {
            "seen_before": seen_before,
            "token": request.regions.get("token"),  # type: ignore[attr-defined]
            "computed": request.regions.get("computed"),  # type: ignore[attr-defined]
            "squares": squares[:n],
            "entries": request.regions.count(),  # type: ignore[attr-defined]
            "in_scope": regions.in_request_scope(),
        }
    )


async def afill(request: HttpRequest) -> JsonResponse:
    """Async twin of :func:`fill` (no thread hop under ASGI)."""
    await asyncio.sleep(0)
    return fill(request)


def boom(request: HttpRequest) -> JsonResponse:
    request.regions.set("token", "boom")  # type: ignore[attr-defined]
    raise RuntimeError("boom")


async def aboom(request: HttpRequest) -> JsonResponse:
    request.regions.set("token", "aboom")  # type: ignore[attr-defined]
    await asyncio.sleep(0)
    raise RuntimeError("aboom")


def _chunks(request: HttpRequest, n: int) -> Iterator[str]:
    for i in range(n):
        yield f"{request.regions.get('token')}:{square(i)}:{regions.in_request_scope()}\n"  # type: ignore[attr-defined]


def stream(request: HttpRequest) -> StreamingHttpResponse:
    """Sync streaming: each chunk reads the request region while the body is being sent."""
    request.regions.set("token", request.GET.get("token", "s"))  # type: ignore[attr-defined]
    return StreamingHttpResponse(_chunks(request, int(request.GET.get("n", "3"))))


async def astream(request: HttpRequest) -> StreamingHttpResponse:
    """Async streaming with an async generator."""
    request.regions.set("token", request.GET.get("token", "a"))  # type: ignore[attr-defined]

    async def chunks() -> AsyncIterator[str]:
        for i in range(int(request.GET.get("n", "3"))):
            await asyncio.sleep(0)
            yield f"{request.regions.get('token')}:{square(i)}:{regions.in_request_scope()}\n"  # type: ignore[attr-defined]

    return StreamingHttpResponse(chunks())


async def astream_sync(request: HttpRequest) -> StreamingHttpResponse:
    """Async view streaming a sync iterator (Django would consume it in a worker thread)."""
    request.regions.set("token", request.GET.get("token", "as"))  # type: ignore[attr-defined]
    return StreamingHttpResponse(_chunks(request, int(request.GET.get("n", "3"))))


def no_request_region(request: HttpRequest) -> JsonResponse:
    try:
        request.regions.get("x")  # type: ignore[attr-defined]
    except regions.RegionError as exc:
        return JsonResponse({"error": str(exc)})
    return JsonResponse({"error": None})
