"""The cross-process lock of a memcached key: a lock key on the key's node, added with a random
token of this holder's in its client flags (meta set in add mode, ``ms <lock> 1 F<token> ME c``,
which answers the item's CAS) and released by a delete on that CAS (``md <lock> C<cas>``): a holder
that outlived ``lock_timeout`` never frees the lock another process took since, and each takes one
round trip, as ``add`` and ``delete`` did.

A release that cannot reach the server is replayed before the server serves reads again, and so
is the release of a take the server did not answer (a hung server applies it when it resumes):
the key's next caller after an outage does not wait ``lock_timeout`` for a lock nobody holds. A
replay knows no CAS: it reads the lock's flags and CAS (``mg <lock> f c``) and deletes it on that
CAS only while it holds this holder's token.
"""

from __future__ import annotations

import math
import secrets
from typing import TYPE_CHECKING

from ...errors import BackendUnavailable
from ...locks import poll
from .nodes import NETWORK_ERRORS

if TYPE_CHECKING:
    from .nodes import Node


class AddLock:
    """Creation (and read-modify-write) lock across processes and hosts.

    The lock key expires after ``lock_timeout`` seconds, so a holder that died frees it by itself.
    """

    def __init__(self, lock_timeout: float, node: Node, name: str) -> None:
        self.lock_timeout, self.node, self.name = lock_timeout, node, name
        self.token = b"%d" % secrets.randbits(32)  # client flags: 32 bits
        self.cas: bytes | None = None  # the lock item's CAS while this holder holds it

    def acquire(self, timeout: float) -> bool:
        expire = max(1, math.ceil(self.lock_timeout))
        request = b"ms %s 1 T%d F%s ME c\r\n1" % (self.name.encode(), expire, self.token)
        node = self.node

        def add() -> bool:
            try:
                reply = node.call("raw_command", request)
            except NETWORK_ERRORS:
                # Sent, and unanswered: a server that was only slow (SIGSTOPped, say) applies it
                # when it resumes; its release is replayed with the invalidations.
                self._defer_release()
                raise
            if not reply.startswith(b"HD"):
                return False  # NS: held by another
            self.cas = _flag(reply, b"c")
            return True

        return poll(add, timeout, 0.005, 0.1)

    def release(self) -> None:
        """Delete the lock while it is this holder's. When the server is down or the call fails,
        the release is replayed when it is back, and the call raises."""
        cas, self.cas = self.cas, None
        node = self.node
        if cas is None:  # (a server that answers HD without the CAS asked for: by token)
            action = self._release_by_token
        else:
            command = b"md %s C%s" % (self.name.encode(), cas)

            def action() -> bool:
                return node.direct("raw_command", command).startswith(b"HD")

        try:
            if node.breaker.down:
                raise BackendUnavailable(node.unavailable)
            action()
        except (BackendUnavailable, *NETWORK_ERRORS):
            self._defer_release()
            raise

    def _defer_release(self) -> None:
        """Release this holder's lock before the server serves reads again (by its token)."""
        self.node.defer(("release", self.name), self._release_by_token)

    def _release_by_token(self) -> bool:
        """Delete the lock only while it holds this holder's token (a read, then a delete on its
        CAS); ``True`` when it was deleted."""
        node, name = self.node, self.name.encode()
        reply = node.direct("raw_command", b"mg %s f c" % name)
        if not reply.startswith(b"HD") or _flag(reply, b"f") != self.token:
            return False  # gone, expired, or another holder's now: left alone
        cas = _flag(reply, b"c")
        return cas is not None and node.direct("raw_command", b"md %s C%s" % (name, cas)).startswith(b"HD")


def _flag(reply: bytes, flag: bytes) -> bytes | None:
    """The value of a meta reply's return flag (``c123`` -> ``b"123"``), ``None`` when absent."""
    for token in reply.split()[1:]:
        if token[:1] == flag:
            return token[1:]
    return None
