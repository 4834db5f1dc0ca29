"""A Redis region's LOCATION and OPTIONS, checked without importing redis-py (the settings check
names a missing package instead of failing to import it).

LOCATION is a ``redis://`` or ``rediss://`` URL (password and db may be in it), or a list of them:
a list is a Redis Cluster's startup nodes and needs ``cluster: True``. ``sentinel`` is
``{"service": "mymaster", "addresses": ["host:26379", ...]}``: the URL then gives the password,
db and TLS of the master the sentinels name, not its address.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

SCHEMES = ("redis", "rediss")
CERT_REQS = ("required", "optional", "none")
TLS_OPTIONS = ("ssl_ca_certs", "ssl_certfile", "ssl_keyfile", "ssl_cert_reqs")

#: name -> (accepted types, default, description): :attr:`RedisStore.options_schema`.
SCHEMA: dict[str, tuple[tuple[type, ...], Any, str]] = {
    "db": ((int,), None, "database number (default: the URL's, else 0); not with cluster"),
    "password": ((str,), None, "password (default: the URL's)"),
    "connect_timeout": ((int, float), 1.0, "seconds to wait for a connection"),
    "socket_timeout": ((int, float), 1.0, "seconds to wait for an answer"),
    "max_connections": ((int,), 32, "most connections to a server, whatever the number of threads"),
    "retry_interval": ((int, float), 1.0, "seconds between probes of a server that failed"),
    "distributed_lock": ((bool,), True, "lock creation across processes (SET NX PX with a token)"),
    "ssl_ca_certs": ((str,), None, "CA bundle that a rediss:// server's certificate is checked against"),
    "ssl_certfile": ((str,), None, "client certificate for rediss://"),
    "ssl_keyfile": ((str,), None, "client certificate's key for rediss://"),
    "ssl_cert_reqs": ((str,), "required", "rediss:// certificate check: required, optional or none"),
    "sentinel": ((dict,), None, "{'service': name, 'addresses': ['host:port', ...]} of Sentinel"),
    "cluster": ((bool,), False, "LOCATION names Redis Cluster nodes (redis-py's RedisCluster)"),
}


def urls(location: Any) -> list[str]:
    """LOCATION as a list of URLs; raises ``ValueError`` saying what is wrong."""
    items = [location] if isinstance(location, str) else location
    if not isinstance(items, (list, tuple)) or not items:
        raise ValueError("LOCATION must be a 'redis://host:port/db' URL or a list of them")
    for item in items:
        if not isinstance(item, str):
            raise ValueError(f"LOCATION item {item!r} is not a 'redis://host:port' URL")
        try:
            parts = urlsplit(item)
            port = parts.port
        except ValueError as exc:
            raise ValueError(f"LOCATION {item!r} is not a URL ({exc})") from None
        if parts.scheme not in SCHEMES or not parts.hostname:
            raise ValueError(f"LOCATION {item!r} is not a redis:// or rediss:// URL with a host")
        if port is not None and not 0 < port < 65536:
            raise ValueError(f"LOCATION {item!r} has no valid port")
    return list(items)


def address(text: Any) -> tuple[str, int]:
    """``"host:port"`` -> ``(host, port)``; raises ``ValueError``."""
    if not isinstance(text, str):
        raise ValueError(f"{text!r} is not a 'host:port' string")
    host, sep, port = text.strip().rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"{text!r} is not of the form 'host:port'")
    return host.strip("[]"), int(port)


def problems(location: Any, options: Mapping[str, Any]) -> list[tuple[str, str, str]]:
    """``(option, what is wrong, remedy)`` for each problem of these settings (types are checked
    by the schema already)."""
    found: list[tuple[str, str, str]] = []
    if importlib.util.find_spec("redis") is None:
        found.append(("BACKEND", "redis-py is not installed", "pip install 'cache-regions[redis]'"))
    try:
        given = urls(location)
    except ValueError:
        return found  # the LOCATION check says it
    cluster, sentinel = options.get("cluster") is True, options.get("sentinel")
    if len(given) > 1 and not cluster:
        found.append(("LOCATION", f"LOCATION lists {len(given)} servers; a Redis region uses one server",
                      "name one URL, or set OPTIONS 'cluster': True to use them as a cluster's nodes"))
    if cluster and sentinel is not None:
        found.append(("OPTIONS.sentinel", "sentinel and cluster are both set",
                      "use one: Sentinel names one master, a cluster many"))
    if cluster and options.get("db") not in (None, 0):
        found.append(("OPTIONS.db", "Redis Cluster has only db 0", "remove db"))
    if isinstance(sentinel, Mapping):
        service, addresses = sentinel.get("service"), sentinel.get("addresses")
        unknown = set(sentinel) - {"service", "addresses"}
        if unknown or not isinstance(service, str) or not service:
            found.append(("OPTIONS.sentinel",
                          f"sentinel={dict(sentinel)!r} needs a 'service' name only besides 'addresses'",
                          "write {'service': 'mymaster', 'addresses': ['host:26379']}"))
        try:
            if not isinstance(addresses, (list, tuple)) or not addresses:
                raise ValueError("'addresses' must be a non-empty list")
            for item in addresses:
                address(item)
        except ValueError as exc:
            found.append(("OPTIONS.sentinel", f"sentinel addresses: {exc}",
                          "list the sentinels as 'host:port' strings, e.g. ['127.0.0.1:26379']"))
    reqs = options.get("ssl_cert_reqs")
    if reqs is not None and reqs not in CERT_REQS:
        found.append(("OPTIONS.ssl_cert_reqs",
                      f"ssl_cert_reqs={reqs!r} is not one of {', '.join(CERT_REQS)}",
                      "use 'required' (the default) unless the server's certificate cannot be checked"))
    tls = [name for name in TLS_OPTIONS if name in options]
    if tls and not all(url.startswith("rediss://") for url in given):
        found.append((f"OPTIONS.{tls[0]}", f"{tls[0]} is set but LOCATION is not a rediss:// URL",
                      "use rediss://host:port for TLS, or remove the TLS options"))
    if options.get("max_connections") == 0:
        found.append(("OPTIONS.max_connections", "max_connections=0 allows no connection", "use 32"))
    return found
