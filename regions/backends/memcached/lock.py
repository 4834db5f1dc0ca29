"""The cross-process lock of a memcached key: a memcached ``add`` of a lock key on the key's node."""

from __future__ import annotations

import math

from ...locks import poll
from .nodes import Node


class AddLock:
    """Creation (and read-modify-write) lock across processes and hosts.

    The lock key expires after ``lock_timeout`` seconds, so a holder that died frees it by itself.
    """

    def __init__(self, lock_timeout: float, node: Node, name: str) -> None:
        self.lock_timeout, self.node, self.name = lock_timeout, node, name

    def acquire(self, timeout: float) -> bool:
        expire = max(1, math.ceil(self.lock_timeout))

        def add() -> bool:
            return bool(self.node.call("add", self.name, b"1", expire=expire, noreply=False))

        return poll(add, timeout, 0.005, 0.1)

    def release(self) -> None:
        self.node.call("delete", self.name, noreply=False)
