"""WSGI entry point for ``gunicorn --preload`` tests: the example project, with the memcached region
used in the master process before the workers fork (as an app that warms its caches at import does).

Each response carries the answering worker's pid in ``X-Worker-Pid``.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from typing import Any

from config.wsgi import application as django_application


def _warm_up() -> int:
    """Use the memcached region now; return how many connected sockets the master holds."""
    import regions  # after Django is set up (config.wsgi did that)
    from config.shop import services

    services.product_price(1)
    node = regions.get_manager()["functions"].store.nodes.single
    return sum(1 for client in node.pool.idle if client.sock is not None)


MASTER_SOCKETS = _warm_up()


def application(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    def start(status: str, headers: list[tuple[str, str]], *args: Any) -> Any:
        extra = [("X-Worker-Pid", str(os.getpid())), ("X-Master-Sockets", str(MASTER_SOCKETS))]
        return start_response(status, headers + extra, *args)

    return django_application(environ, start)
