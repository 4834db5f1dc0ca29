"""Reachability probes that need neither Django settings nor a regions manager."""

from __future__ import annotations

from typing import Any

from pymemcache.client.base import Client

from regions.backends.memcached.nodes import parse_servers


def server_addresses(location: Any) -> list[str]:
    """Memcached LOCATION (``"h:p"``, ``"h1:p;h2:p"`` or a list) as ``"host:port"`` strings.

    A malformed LOCATION gives ``[]`` (it is reported as ``django_regions.E003`` instead).
    """
    try:
        servers = parse_servers(location)
    except ValueError:
        return []
    return [f"[{host}]:{port}" if ":" in host else f"{host}:{port}" for host, port in servers]


def memcached_answers(address: str, timeout: float = 1.0) -> bool:
    """Whether the memcached server at ``"host:port"`` answers ``version`` within ``timeout`` seconds."""
    try:
        [server] = parse_servers(address)
    except ValueError:
        return False
    client = Client(server, connect_timeout=timeout, timeout=timeout)
    try:
        return bool(client.version())
    except Exception:  # refused, timed out, reset, garbage: all mean "not answering"
        return False
    finally:
        client.close()


def unreachable(location: Any, timeout: float = 1.0) -> list[str]:
    """The addresses in ``location`` whose memcached does not answer (``[]`` if LOCATION is malformed)."""
    return [addr for addr in server_addresses(location) if not memcached_answers(addr, timeout)]
