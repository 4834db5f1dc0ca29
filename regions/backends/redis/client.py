"""The redis-py client of a Redis region, and the health of its server.

* :func:`make_client` builds it from the settings: ``Redis`` with its own bounded
  ``BlockingConnectionPool`` (at most ``max_connections``, a caller waits ``connect_timeout`` for a
  free one), a Sentinel's ``master_for(service)``, or a :class:`LazyCluster`: redis-py's
  ``RedisCluster`` asks the nodes for the slots while it is constructed, so it is built at its
  first use instead, and a cluster that does not answer then is a network failure like any other
  (the breaker's probe builds it when the nodes answer). Nothing here speaks the
  protocol or pools sockets by itself: redis-py does, and its pools start anew in a forked child
  (they check the pid).
* :class:`Server`: one per client settings (address, Sentinel service or cluster) and process,
  shared by every region that uses them; its :class:`~regions.breaker.Breaker` marks the server
  down for all of them at the first network failure (a failure is a miss, logged once) and probes
  it every ``retry_interval`` seconds, replaying each region's invalidations made meanwhile first.
"""

from __future__ import annotations

import os
import threading
import weakref
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import redis
from redis.backoff import NoBackoff
from redis.cluster import ClusterNode, PipelineCommand, RedisCluster
from redis.connection import Encoder
from redis.exceptions import (
    AskError,
    ClusterDownError,
    MaxConnectionsError,
    MovedError,
    RedisClusterException,
    RedisClusterUnreachableError,
    RedisError,
    SlotNotCoveredError,
    TryAgainError,
)
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from redis.retry import Retry
from redis.sentinel import MasterNotFoundError, Sentinel

from ...breaker import Breaker
from .options import address, urls

if TYPE_CHECKING:
    from . import RedisStore


class ClusterUnavailable(RedisConnectionError):
    """A Redis Cluster's client could not be built: no startup node answered, or the nodes that
    did have not formed the cluster yet (slots not covered, nodes that disagree, cluster mode off)."""


#: Failures that say the server (or the link to it) is not answering. A refused command (a wrong
#: type, a script error) is not one. A cluster's: no node reachable for a topology refresh, a
#: ``CLUSTERDOWN`` reply (slots not served), a slot no node covers (a refresh under way), a client
#: that could not be built (:class:`ClusterUnavailable`). Its other ``RedisClusterException``\ s
#: (a cross-slot transaction, an unsupported method) are programming errors, raised as they are.
NETWORK_ERRORS: tuple[type[BaseException], ...] = (
    OSError, RedisConnectionError, RedisTimeoutError, MasterNotFoundError,
    RedisClusterUnreachableError, ClusterDownError, SlotNotCoveredError,
)
#: Replies of a cluster node that say a slot is elsewhere (being moved): redis-py follows them.
REDIRECTIONS = (MovedError, AskError, TryAgainError)
#: What redis-py's BlockingConnectionPool raises when no connection came free in time: a busy
#: pool, not a failed server (the breaker is not tripped; :class:`~regions.errors.PoolExhausted`).
POOL_EMPTY = "No connection available."


def exhausted(exc: BaseException) -> bool:
    """Whether ``exc`` says every connection of the pool stayed busy (not that the server failed):
    a ``BlockingConnectionPool`` that waited in vain, or a cluster node's pool at ``max_connections``
    (redis-py's ``MaxConnectionsError``, which it does not count as a node failure either)."""
    return isinstance(exc, MaxConnectionsError) or (
        isinstance(exc, RedisConnectionError) and str(exc) == POOL_EMPTY)


_CERT_REQS = {"required": "required", "optional": "optional", "none": "none"}


def cluster_send(client: Any, commands: list[tuple[Any, ...]], raise_on_error: bool = True) -> list[Any]:
    """The replies of ``commands`` (keys of several slots) on a ``RedisCluster``: one pipeline, and
    one timeout when a node hangs. redis-py's own cluster pipeline sends every command that failed
    with a network error again, alone, waiting one more timeout each (a hit's GET and PTTL on a hung
    node cost three); here a network error is raised at once, for the breaker. Only redirections
    (a slot being moved) go through redis-py's pipeline, which follows them. ``raise_on_error``
    false: a refused command's error is its reply (a network error is raised all the same)."""
    stack = [PipelineCommand(tuple(command), {}, i) for i, command in enumerate(commands)]
    replies = list(client.pipeline(transaction=False).send_cluster_commands(
        stack, raise_on_error=False, allow_redirections=False))
    for reply in replies:
        if isinstance(reply, NETWORK_ERRORS):
            raise reply
    if any(isinstance(reply, REDIRECTIONS) for reply in replies):
        pipe = client.pipeline(transaction=False)
        for command in commands:
            pipe.execute_command(*command)
        return list(pipe.execute(raise_on_error=raise_on_error))
    if raise_on_error:
        for reply in replies:
            if isinstance(reply, Exception):
                raise reply
    return replies


def _connection_kwargs(options: Mapping[str, Any]) -> dict[str, Any]:
    kwargs: dict[str, Any] = {
        "socket_timeout": float(options.get("socket_timeout", 1.0)),
        "socket_connect_timeout": float(options.get("connect_timeout", 1.0)),
        # No retries inside redis-py (it retries 3 times by default): a failure is a miss at once,
        # one timeout per outage, and the breaker decides when to try again.
        "retry": Retry(NoBackoff(), 0),
    }
    if options.get("password") is not None:
        kwargs["password"] = options["password"]
    if options.get("db") is not None:
        kwargs["db"] = int(options["db"])
    return kwargs


def async_connection_kwargs(options: Mapping[str, Any]) -> dict[str, Any]:
    """:func:`_connection_kwargs` (and TLS) for ``redis.asyncio`` connections (:mod:`.aio`): the
    same timeouts, credentials and db, and no retries either."""
    from redis.asyncio.retry import Retry as AsyncRetry

    return {**_connection_kwargs(options), "retry": AsyncRetry(NoBackoff(), 0), **_tls_kwargs(options)}


def _tls_kwargs(options: Mapping[str, Any]) -> dict[str, Any]:
    out = {name: options[name] for name in ("ssl_ca_certs", "ssl_certfile", "ssl_keyfile") if name in options}
    if "ssl_cert_reqs" in options:
        out["ssl_cert_reqs"] = _CERT_REQS[options["ssl_cert_reqs"]]
    return out


def label(location: Any, options: Mapping[str, Any]) -> str:
    """What names the server in logs and shares its breaker: its address, without the password."""
    sentinel = options.get("sentinel")
    if sentinel:
        return f"sentinel {sentinel['service']} via {','.join(sentinel['addresses'])}"
    names = []
    for url in urls(location):
        scheme, _, rest = url.partition("://")
        names.append(f"{scheme}://{rest.rpartition('@')[2]}")
    return ("cluster " if options.get("cluster") else "") + ",".join(names)


def make_client(location: Any, options: Mapping[str, Any]) -> Any:
    """A redis-py client for these (valid) settings."""
    given = urls(location)
    kwargs = _connection_kwargs(options)
    most = max(1, int(options.get("max_connections", 32)))
    tls = _tls_kwargs(options)
    if options.get("cluster"):
        kwargs.pop("db", None)
        first = redis.connection.parse_url(given[0])
        for name in ("password", "username"):
            if name in first and name not in kwargs:
                kwargs[name] = first[name]
        nodes = []
        for url in given:
            parsed = redis.connection.parse_url(url)
            nodes.append(ClusterNode(parsed.get("host", "localhost"), int(parsed.get("port", 6379))))
        return LazyCluster(dict(startup_nodes=nodes, max_connections=most,
                                ssl=given[0].startswith("rediss://"), **tls, **kwargs))
    sentinel = options.get("sentinel")
    parsed = redis.connection.parse_url(given[0])
    if sentinel:
        for name in ("password", "username", "db"):
            if name in parsed and name not in kwargs:
                kwargs[name] = parsed[name]
        timeouts = {k: kwargs[k] for k in ("socket_timeout", "socket_connect_timeout", "retry")}
        guards = Sentinel([address(a) for a in sentinel["addresses"]], sentinel_kwargs=dict(timeouts),
                          **timeouts)
        extra = {"ssl": True, **tls} if given[0].startswith("rediss://") else {}
        return guards.master_for(sentinel["service"], max_connections=most, **extra, **kwargs)
    pool = redis.BlockingConnectionPool.from_url(
        given[0], max_connections=most, timeout=kwargs["socket_connect_timeout"], **tls, **kwargs
    )
    return redis.Redis(connection_pool=pool)


class LazyCluster:
    """A ``RedisCluster`` built at its first use rather than when the store is made: redis-py's
    constructor queries the startup nodes for the slots, and raises when none answers, which would
    stop the application from starting (or a forked child from resetting its stores) while the
    cluster is down. Any attribute but these is the built client's; building it again after a
    failure is the caller's next use (the breaker's probe, every ``retry_interval``).

    A failure to build is :class:`ClusterUnavailable` (a network error: the breaker goes down, one
    log line naming the cluster), with redis-py's reason. Once built, the client is kept: redis-py
    refreshes the topology by itself, and a hit is the same single pipeline as before."""

    #: No pool of its own (each node has one): :meth:`Server.disconnect` finds none, and does not
    #: build the client to look.
    connection_pool = None

    def __init__(self, kwargs: dict[str, Any]) -> None:
        self._kwargs = kwargs
        self._client: RedisCluster | None = None
        self._lock = threading.Lock()
        self._encoder = Encoder("utf-8", "strict", False)
        self._attempts = 0
        self._failure: ClusterUnavailable | None = None

    def _built(self) -> RedisCluster:
        """The client, built now if it is not yet (raises :class:`ClusterUnavailable`). Callers
        that waited for another thread's attempt, which failed, get its failure: one wait for
        the nodes per attempt, not one per caller."""
        client = self._client
        if client is None:
            attempts = self._attempts
            with self._lock:
                client = self._client
                if client is None:
                    if self._attempts != attempts and self._failure is not None:
                        raise self._failure
                    self._attempts += 1
                    try:
                        client = RedisCluster(**self._kwargs)
                    except (RedisClusterException, RedisError, OSError) as exc:
                        self._failure = ClusterUnavailable(str(exc))
                        raise self._failure from exc
                    self._client, self._failure = client, None
        return client

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):  # copy, pickle and the like: never a reason to connect
            raise AttributeError(name)
        return getattr(self._built(), name)

    def pipeline(self, transaction: Any = None, shard_hint: Any = None) -> Any:
        """The built client's pipeline (what a hit sends through), without ``__getattr__``'s
        detour."""
        return self._built().pipeline(transaction=transaction, shard_hint=shard_hint)

    def get_encoder(self) -> Encoder:
        """What scripts encode their source with (redis-py's default, as the cluster's would be):
        registering a script does not connect."""
        return self._encoder

    def register_script(self, script: str) -> Any:
        """A script object bound to this client, made without connecting (it is run with
        ``client=`` given, or through this object, which builds the client then)."""
        from redis.commands.core import Script

        return Script(self, script)  # type: ignore[arg-type]  # a stand-in for the RedisCluster

    def close(self) -> None:
        """Close the client if it was built (never builds it)."""
        client, self._client = self._client, None
        if client is not None:
            client.close()


def cluster_serves(client: Any) -> None:
    """Raise unless every primary node of the cluster answers and says it serves all the slots
    (``CLUSTER INFO``'s ``cluster_state:ok``). A ``PING`` goes to one node, which answers while
    the others are dead or while the cluster refuses keys (``CLUSTERDOWN``): the breaker would come
    up, and go down at the next read of a key there, every ``retry_interval``."""
    states = client.cluster_info(target_nodes=RedisCluster.PRIMARIES)
    if "cluster_state" in states:  # one primary: its reply as it is
        states = {"the node": states}
    failing = sorted(node for node, info in states.items() if info.get("cluster_state") != "ok")
    if failing:
        raise ClusterDownError(f"cluster_state is not ok on {', '.join(failing)}")


class Server:
    """One Redis server (or Sentinel service, or cluster) as this process sees it: the breaker
    every region using it shares, and those regions' stores (held weakly)."""

    def __init__(self, name: str) -> None:
        self.label = name
        self.stores: weakref.WeakSet[RedisStore] = weakref.WeakSet()
        self.breaker = Breaker(f"redis {name}", self.probe, 1.0, on_down=self.disconnect)

    def probe(self) -> None:
        """Raise unless the server answers (through any region's client); a cluster, unless it
        serves every slot (:func:`cluster_serves`)."""
        stores = list(self.stores)
        if not stores:
            raise ConnectionError(f"no region uses redis {self.label} any more")
        if stores[0].cluster:
            cluster_serves(stores[0].client)
        else:
            stores[0].client.ping()

    def disconnect(self) -> None:
        """The server is down: drop idle connections (they may be stuck or dead)."""
        for store in list(self.stores):
            try:
                pool = getattr(store.client, "connection_pool", None)
                if pool is not None:
                    pool.disconnect(inuse_connections=False)
            except Exception:
                pass

    def describe(self) -> None:
        stores = list(self.stores)
        if stores:
            names = ", ".join(map(repr, sorted({store.region for store in stores})))
            many = "s" if "," in names else ""
            self.breaker.name = f"cache region{many} {names}: redis {self.label}"
            self.breaker.retry_interval = min(store.retry_interval for store in stores)


_servers: dict[str, Server] = {}
_servers_lock = threading.Lock()
_servers_pid = os.getpid()


def _forget_parent_servers() -> None:
    """In a forked child: the parent's breakers (threads, backlogs) are not its own."""
    global _servers_lock, _servers_pid
    if _servers_pid != os.getpid():
        _servers_lock = threading.Lock()
        _servers.clear()
        _servers_pid = os.getpid()


os.register_at_fork(after_in_child=_forget_parent_servers)


def attach(store: RedisStore) -> Server:
    """The :class:`Server` of ``store``'s settings in this process, ``store`` now one of its users."""
    _forget_parent_servers()
    with _servers_lock:
        server = _servers.get(store.server_label)
        if server is None or server.breaker.closed:
            server = _servers[store.server_label] = Server(store.server_label)
        server.stores.add(store)
        server.describe()
    return server


def detach(store: RedisStore, server: Server) -> None:
    """``store`` closes: the server's breaker stops when no region uses it any more."""
    with _servers_lock:
        server.stores.discard(store)
        if not server.stores:
            server.breaker.close()
            if _servers.get(server.label) is server:
                del _servers[server.label]
        else:
            server.describe()
