"""RequestRegionMiddleware: a fresh scope per request, closed on response, error or end of stream."""

from __future__ import annotations

import json
from typing import Any

import pytest
from asgiref.sync import async_to_sync
from django.http import HttpRequest, HttpResponse
from django.test import AsyncClient, Client, RequestFactory

import regions
from django_regions.middleware import RequestRegionMiddleware, RequestRegions

pytestmark = pytest.mark.urls("tests.django.urls")


def test_sync_request_gets_a_fresh_scope_that_caches() -> None:
    client = Client()
    first = client.get("/t/fill/", {"token": "one", "n": 5}).json()
    assert first["in_scope"] is True
    assert first["seen_before"] is None
    assert first["token"] == "one"
    assert first["computed"] == 5, "15 calls of square(), 5 distinct arguments: 5 computations"
    assert first["squares"] == [0, 1, 4, 9, 16]
    assert not regions.in_request_scope(), "closed when the response was returned"

    second = client.get("/t/fill/", {"token": "two", "n": 5}).json()
    assert second["seen_before"] is None, "nothing from the previous request"
    assert second["computed"] == 5
    assert regions.get_manager()["request"].count() is None, "no scope, nothing to count"


def test_async_request_gets_a_fresh_scope() -> None:
    async def run() -> list[dict[str, Any]]:
        client = AsyncClient()
        out = []
        for token in ("a1", "a2"):
            response = await client.get("/aecho/", {"token": token, "n": 4})
            out.append(json.loads(response.content))
            assert not regions.in_request_scope()
        return out

    first, second = async_to_sync(run)()
    assert first["stored"] == "a1" and first["values"] == [f"a1:{i}" for i in range(4)] * 2
    assert second["stored"] == "a2" and second["values"] == [f"a2:{i}" for i in range(4)] * 2


def test_sync_view_through_async_client() -> None:
    async def run() -> dict[str, Any]:
        response = await AsyncClient().get("/t/fill/", {"token": "x", "n": 3})
        assert not regions.in_request_scope()
        return json.loads(response.content)

    data = async_to_sync(run)()
    assert data["in_scope"] and data["token"] == "x" and data["computed"] == 3


def test_exception_in_view_closes_the_scope_sync() -> None:
    with pytest.raises(RuntimeError, match="boom"):
        Client().get("/t/boom/")
    assert not regions.in_request_scope()
    response = Client(raise_request_exception=False).get("/t/boom/")
    assert response.status_code == 500
    assert not regions.in_request_scope()


def test_exception_in_view_closes_the_scope_async() -> None:
    async def run() -> None:
        with pytest.raises(RuntimeError, match="aboom"):
            await AsyncClient().get("/t/aboom/")
        assert not regions.in_request_scope()

    async_to_sync(run)()


def test_exception_reaching_the_middleware_closes_the_scope() -> None:
    """Called directly with a get_response that raises (as when it is the outermost middleware)."""
    seen: list[Any] = []

    def get_response(request: HttpRequest) -> HttpResponse:
        request.regions.set("k", "v")  # type: ignore[attr-defined]
        seen.append(request.regions.get("k"))  # type: ignore[attr-defined]
        raise ValueError("raised through")

    with pytest.raises(ValueError, match="raised through"):
        RequestRegionMiddleware(get_response)(RequestFactory().get("/"))
    assert seen == ["v"]
    assert not regions.in_request_scope()

    async def aget_response(request: HttpRequest) -> HttpResponse:
        seen.append(regions.in_request_scope())
        raise ValueError("raised through async")

    async def run() -> None:
        with pytest.raises(ValueError, match="raised through async"):
            await RequestRegionMiddleware(aget_response)(RequestFactory().get("/"))
        assert not regions.in_request_scope()

    async_to_sync(run)()
    assert seen == ["v", True]


def test_streaming_response_keeps_the_scope_until_the_body_is_sent() -> None:
    response = Client().get("/t/stream/", {"token": "st", "n": 3})
    assert response.streaming
    assert regions.in_request_scope(), "still open: the body has not been sent yet"
    body = b"".join(response.streaming_content).decode()
    assert body.splitlines() == ["st:0:True", "st:1:True", "st:4:True"]
    assert not regions.in_request_scope(), "closed after the last chunk"


@pytest.mark.django_db  # HttpResponse.close() sends request_finished -> DB cleanup
def test_streaming_response_closed_early_closes_the_scope() -> None:
    response = Client().get("/t/stream/", {"token": "st", "n": 3})
    assert regions.in_request_scope()
    response.close()  # what WSGI servers do when the client goes away
    assert not regions.in_request_scope()


@pytest.mark.django_db  # HttpResponse.close() sends request_finished -> DB cleanup
def test_streaming_response_first_chunk_then_close() -> None:
    response = Client().get("/t/stream/", {"token": "st", "n": 3})
    iterator = iter(response.streaming_content)
    assert next(iterator) == b"st:0:True\n"
    response.close()
    assert not regions.in_request_scope()


@pytest.mark.parametrize("path", ["/t/astream/", "/t/astream-sync/"])
def test_async_streaming_keeps_the_scope_until_the_body_is_sent(path: str) -> None:
    async def run() -> list[str]:
        response = await AsyncClient().get(path, {"token": "as", "n": 3})
        assert response.streaming and response.is_async
        assert regions.in_request_scope()
        chunks = [chunk.decode() async for chunk in response.streaming_content]
        assert not regions.in_request_scope()
        return "".join(chunks).splitlines()

    assert async_to_sync(run)() == ["as:0:True", "as:1:True", "as:4:True"]


def test_request_regions_gives_the_request_region() -> None:
    captured: dict[str, Any] = {}

    def view(request: HttpRequest) -> HttpResponse:
        rr = request.regions  # type: ignore[attr-defined]
        captured["type"] = type(rr)
        rr.set("a", 1)
        captured["a"] = rr.get("a")
        captured["made"] = rr.get_or_create("b", lambda: [1, 2])
        captured["again"] = rr.get_or_create("b", lambda: "not called")
        rr.delete("a")
        captured["deleted"] = rr.get("a", "gone")
        captured["count"] = rr.count()
        captured["functions"] = rr["functions"].name
        captured["region"] = rr.region.backend
        return HttpResponse("ok")

    RequestRegionMiddleware(view)(RequestFactory().get("/"))
    assert captured == {
        "type": RequestRegions,
        "a": 1,
        "made": [1, 2],
        "again": [1, 2],
        "deleted": "gone",
        "count": 1,
        "functions": "functions",
        "region": "request",
    }


def test_request_regions_without_a_request_region_says_what_to_add(settings: Any) -> None:
    settings.CACHE_REGIONS = {"functions": {"BACKEND": "memory"}}
    data = Client().get("/t/no-request-region/").json()
    assert "no region with BACKEND 'request'" in data["error"]
