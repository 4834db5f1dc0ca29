"""Real servers: runserver (WSGI) and uvicorn (ASGI) on free loopback ports, 100 concurrent requests.

Each request stores its own token in the request region and reads back values computed from it
(also from ScopedThreadPoolExecutor workers, or concurrently awaited coroutines); a request that
ever saw another request's value would show a foreign token.
"""

from __future__ import annotations

import json
import threading
import urllib.request
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

CONCURRENT = 100
N = 20


def fire(base: str, path: str) -> list[tuple[str, dict[str, Any]]]:
    """100 requests at once (released together by a barrier); returns (token, json) for each."""
    barrier = threading.Barrier(CONCURRENT, timeout=30)

    def one(_: int) -> tuple[str, dict[str, Any]]:
        token = uuid.uuid4().hex
        barrier.wait()
        with urllib.request.urlopen(f"{base}{path}?token={token}&n={N}", timeout=60) as response:
            assert response.status == 200
            return token, json.loads(response.read())

    with ThreadPoolExecutor(max_workers=CONCURRENT) as pool:
        return list(pool.map(one, range(CONCURRENT), timeout=120))


def max_in_flight(results: list[tuple[str, dict[str, Any]]]) -> int:
    """Most views running at the same moment (from the start/finish times they report)."""
    events = sorted(
        [(d["started"], 1) for _, d in results] + [(d["finished"], -1) for _, d in results],
        key=lambda e: (e[0], e[1]),
    )
    level = peak = 0
    for _, step in events:
        level += step
        peak = max(peak, level)
    return peak


@pytest.mark.parametrize("kind", ["wsgi", "asgi"])
@pytest.mark.parametrize("path", ["/echo/", "/aecho/"])
def test_concurrent_requests_only_see_their_own_values(
    serve: Callable[[str], str], kind: str, path: str
) -> None:
    base = serve(kind)
    results = fire(base, path)
    assert len(results) == CONCURRENT
    assert len({token for token, _ in results}) == CONCURRENT
    for token, data in results:
        assert data["token"] == token
        assert data["stored"] == token, "request.regions returned another request's value"
        expected = [f"{token}:{i}" for i in range(N)]
        assert data["values"] == expected * 2, "a request-cached value came from another request"
        assert data["entries"] == N + 1, "the request region holds exactly this request's entries"
    if not (kind == "asgi" and path == "/echo/"):  # ASGI runs sync views one at a time, in one thread
        assert max_in_flight(results) > 1, "the requests did not overlap: the test would prove nothing"
