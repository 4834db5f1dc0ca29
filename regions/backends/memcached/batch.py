"""Batches: many keys of one namespace read, stored or deleted in one pipelined round trip per
server (:func:`.wire.get_many`, :func:`.wire.set_many`, :func:`.wire.delete_many`) instead of one
per key. They back the region's ``read_many`` / ``put_many`` / ``remove_many`` and Django's
``get_many`` / ``set_many`` / ``delete_many``.

Keys are grouped by the node that holds them, and each entry is read and written as a single key's
is (sealed, split in parts when too large, its time rebased on this host's clock). A server that is
down or fails costs only its own keys: they are misses, or not stored, or their deletes are
replayed before it serves reads again; the first failure is returned beside the result, never
raised. Only a value that cannot be pickled raises, before anything is sent.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from typing import TYPE_CHECKING

from pymemcache.exceptions import MemcacheServerError

from ...errors import BackendUnavailable, UnstorableValue
from ...signing import RejectedEntry
from ..contract import Entry
from .entry_format import Placeholder, unseal
from .nodes import NETWORK_ERRORS, Node
from .parts import HEAD_MARK
from .wire import delete_many, get_many, set_many

if TYPE_CHECKING:
    from . import MemcachedNamespaceManager


class Batches:
    """The batches of one namespace (``manager``), through its public calls: its wire keys, its
    :meth:`~.MemcachedNamespaceManager.pack` and its deferred deletes."""

    def __init__(self, manager: MemcachedNamespaceManager) -> None:
        self.manager = manager
        self.store = manager.store

    def _by_node(self, keys: Sequence[Hashable]) -> dict[Node, list[tuple[Hashable, str]]]:
        """``keys`` (without duplicates) grouped by the node holding them: ``{node: [(key, wire)]}``."""
        nodes = self.store.nodes
        wire_key = self.manager.wire_key
        grouped: dict[Node, list[tuple[Hashable, str]]] = {}
        for key in dict.fromkeys(keys):
            wire = wire_key(key)
            grouped.setdefault(nodes.single or nodes.node_for(wire), []).append((key, wire))
        return grouped

    def get_entries(
        self, keys: Sequence[Hashable]
    ) -> tuple[dict[Hashable, Entry | RejectedEntry], Exception | None]:
        """The entries of ``keys``, one pipelined ``mg`` per server (:func:`.wire.get_many`). A
        server that is down or fails leaves its keys out (misses) and is the failure returned."""
        found: dict[Hashable, Entry | RejectedEntry] = {}
        failure: Exception | None = None
        store = self.store
        signer = store.signer
        parts = self.manager.parts
        for node, items in self._by_node(keys).items():
            if node.breaker.down:
                failure = failure or BackendUnavailable(node.unavailable)
                continue
            raws = [wire.encode() for _, wire in items]
            pool = node.pool
            client = pool.acquire()
            try:
                hits = get_many(client, raws)
            except NETWORK_ERRORS as exc:
                node.breaker.trip(exc)
                failure = failure or exc
                continue
            except Exception as exc:
                failure = failure or exc
                continue
            finally:
                pool.release(client)
            for (key, wire), raw in zip(items, raws, strict=True):
                hit = hits.get(raw)
                if hit is None:
                    continue
                try:
                    entry = unseal(signer, raw, hit[0])
                    if type(entry) is tuple and entry and entry[0] == HEAD_MARK:
                        entry = parts.get(node, wire, entry)
                except Placeholder:
                    continue
                except RejectedEntry as exc:
                    found[key] = exc
                    continue
                except Exception as exc:
                    failure = failure or exc
                    continue
                entry = store.rebased(entry, hit[1])
                if entry is not None:
                    found[key] = entry
        return found, failure

    def set_entries(self, entries: Mapping[Hashable, Entry]) -> tuple[list[Hashable], Exception | None]:
        """Store each entry with one pipelined ``set`` per server (:func:`.wire.set_many`). Every
        value is pickled first: one that cannot be raises before anything is sent."""
        store = self.store
        pack = self.manager.pack
        grouped = self._by_node(list(entries))
        failed: list[Hashable] = []
        failure: Exception | None = None
        for node, items in grouped.items():
            if node.breaker.down:
                failed.extend(key for key, _ in items)
                failure = failure or BackendUnavailable(node.unavailable)
                continue
            batch: list[tuple[bytes, bytes, int]] = []
            keys: list[Hashable] = []
            for key, wire in items:
                try:
                    data, expire, _head = pack(wire, node, entries[key])
                except UnstorableValue:
                    raise
                except Exception as exc:  # the parts of a large value could not be written
                    failed.append(key)
                    failure = failure or exc
                    continue
                batch.append((wire.encode(), data, expire))
                keys.append(key)
            pool = node.pool
            client = pool.acquire()
            try:
                results = set_many(client, batch)
            except Exception as exc:
                if isinstance(exc, NETWORK_ERRORS):
                    node.breaker.trip(exc)
                failed.extend(keys)
                failure = failure or exc
                continue
            finally:
                pool.release(client)
            for key, (_wire, data, _expire), refusal in zip(keys, batch, results, strict=True):
                if refusal is None:
                    continue
                failed.append(key)
                if b"too large" in refusal:
                    failure = failure or store.item_too_large(len(data))
                elif refusal != b"NOT_STORED":
                    failure = failure or MemcacheServerError(refusal.decode("ascii", "replace"))
        return failed, failure

    def delete_entries(self, keys: Sequence[Hashable]) -> tuple[list[Hashable], Exception | None]:
        """Delete ``keys`` with one pipelined ``delete ... noreply`` and ``mn`` per server
        (:func:`.wire.delete_many`); a server that is down or fails gets each of its deletes
        retried before it serves reads again, as a single key's delete does."""
        manager = self.manager
        try:
            grouped = self._by_node(keys)
        except Exception as exc:  # no key can be built (no counter readable): bump the namespace
            manager.defer_remove()
            return list(keys), exc
        failed: list[Hashable] = []
        failure: Exception | None = None
        for node, items in grouped.items():
            problem: Exception | None = None
            if node.breaker.down:
                problem = BackendUnavailable(node.unavailable)
            else:
                pool = node.pool
                client = pool.acquire()
                try:
                    delete_many(client, [wire.encode() for _, wire in items])
                except Exception as error:
                    if isinstance(error, NETWORK_ERRORS):
                        node.breaker.trip(error)
                    problem = error
                finally:
                    pool.release(client)
            if problem is None:
                continue
            manager.defer_deletes(node, [wire for _, wire in items])
            failed.extend(key for key, _ in items)
            failure = failure or problem
        return failed, failure
