"""The cross-process lock of a Redis key: ``SET lock token NX PX`` and a release that deletes
the lock only while it still holds this holder's token (a compare-and-delete in Lua), so a holder
that outlived ``lock_timeout`` never frees the lock another process took since. A release that
cannot reach the server is replayed, like an invalidation, before the server serves reads again,
and so is the release of a take the server did not answer (it may apply it when it resumes): the
key's next caller after an outage does not wait ``lock_timeout`` for a lock nobody holds."""

from __future__ import annotations

import math
import secrets
from collections.abc import Callable
from typing import TYPE_CHECKING

from ...locks import poll

if TYPE_CHECKING:
    from . import RedisStore

#: Deletes KEYS[1] only when it holds ARGV[1].
RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
    return redis.call('DEL', KEYS[1])
end
return 0
"""


class TokenLock:
    """Creation (and read-modify-write) lock across processes and hosts. The lock key expires after
    ``lock_timeout`` seconds, so a holder that died frees it by itself."""

    def __init__(self, store: RedisStore, name: str) -> None:
        self.store, self.name = store, name
        self.token = secrets.token_hex(16)

    def acquire(self, timeout: float) -> bool:
        ms = max(1, math.ceil(self.store.lock_timeout * 1000))
        store, name, token = self.store, self.name, self.token

        def take() -> bool:
            try:
                return bool(store.guarded_call(lambda c: c.set(name, token, nx=True, px=ms)))
            except store.network_errors:
                # Sent, and unanswered: a server that was only slow (SIGSTOPped, say) applies it
                # when it resumes, and the key would stay locked for lock_timeout by a holder that
                # never knew it held it. Its release is replayed with the invalidations instead.
                store.backlog.defer(("release", name), self._release_action())
                raise

        return poll(take, timeout, 0.005, 0.1)

    def _release_action(self) -> Callable[[], object]:
        store, name, token = self.store, self.name, self.token
        return lambda: store.scripts.release(keys=[name], args=[token], client=store.client)

    def release(self) -> bool:
        """``True`` when this holder's lock was deleted; ``False`` when it had expired (and may be
        another holder's now: left alone). When the server is down or the call fails, the release
        is deferred (replayed when the server is back: it deletes only while the token is still
        this holder's) and the call raises."""
        return bool(self.store.invalidation(("release", self.name), self._release_action()))
