"""Several keys in one round trip on a pooled pymemcache client's socket (tag counters).

:func:`get_many` is the tagged hit: ``get <entry> <counter> ...``, read in one piece when it fits,
as :func:`.memcached_get.get` reads a plain hit. :func:`incr_many` is a tag invalidation:
``incr <counter> 1`` for each counter, sent in batches whose replies are read before the next
batch goes (a long batch must not fill both directions' buffers at once). Any reply out of step
closes the connection, so the next command never reads another's reply.
"""

from __future__ import annotations

from typing import Any

from pymemcache.exceptions import MemcacheUnexpectedCloseError

from . import memcached_get

_RECV = 65536
_OUT_OF_STEP = "a reply that does not answer this command (connection dropped)"
#: Commands sent before their replies are read.
BATCH = 256
_NOT_A_NUMBER = b"CLIENT_ERROR cannot increment"


def _socket(client: Any) -> Any:
    sock = client.sock
    if sock is not None and sock.gettimeout() is not None and memcached_get.KERNEL_TIMEOUTS:
        memcached_get.kernel_timeouts(sock)
    return sock


def get_many(client: Any, keys: list[bytes]) -> dict[bytes, bytes]:
    """``get k1 k2 ...`` on a pooled client's socket, read in one piece when it fits (as
    :func:`.memcached_get.get` does for one key): ``{key: value}`` of the keys found."""
    sock = _socket(client)
    if sock is None:  # connects (pymemcache owns the connection settings)
        return {k.encode(): v for k, v in client.get_many([k.decode() for k in keys]).items()}
    try:
        sock.sendall(b"get " + b" ".join(keys) + b"\r\n")
        buf = sock.recv(_RECV)
        pos = 0
        found: dict[bytes, bytes] = {}
        while True:
            end = buf.find(b"\r\n", pos)
            while end < 0:
                buf = buf[pos:] + _more(sock)
                pos, end = 0, buf.find(b"\r\n")
            if end - pos == 3 and buf[pos:end] == b"END":
                if end + 2 != len(buf):
                    raise MemcacheUnexpectedCloseError(_OUT_OF_STEP)
                return found
            head = buf[pos:end].split(b" ")
            if head[0] != b"VALUE" or len(head) < 4 or head[1] not in keys:
                memcached_get._refused(buf[pos:end])
            start = end + 2
            stop = start + int(head[3])
            while len(buf) < stop + 2:
                buf += _more(sock)
            if buf[stop : stop + 2] != b"\r\n":
                raise MemcacheUnexpectedCloseError(_OUT_OF_STEP)
            found[head[1]] = buf[start:stop]
            pos = stop + 2
    except BaseException:
        client.close()  # never leave unread bytes for the next command
        raise


def _more(sock: Any) -> bytes:
    data = sock.recv(_RECV)
    if not data:
        raise MemcacheUnexpectedCloseError("the server closed the connection")
    return data


def incr_many(client: Any, keys: list[bytes]) -> list[bytes]:
    """``incr <key> 1`` for each key; a key that is missing stays missing (``NOT_FOUND``).
    Returns the keys that hold no number (written by something else), which could not be bumped."""
    sock = _socket(client)
    if sock is None and keys:  # connects through pymemcache's own incr
        client.incr(keys[0].decode(), 1, noreply=False)
        keys = keys[1:]
        sock = _socket(client)
    damaged: list[bytes] = []
    try:
        for first in range(0, len(keys), BATCH):
            batch = keys[first : first + BATCH]
            sock.sendall(b"".join(b"incr " + key + b" 1\r\n" for key in batch))
            buf, pos, done = b"", 0, 0
            while done < len(batch):
                end = buf.find(b"\r\n", pos)
                if end < 0:
                    buf, pos = buf[pos:] + _more(sock), 0
                    continue
                line = buf[pos:end]
                if line.startswith(_NOT_A_NUMBER):
                    damaged.append(batch[done])
                elif not (line.isdigit() or line == b"NOT_FOUND"):
                    memcached_get._refused(line)
                pos, done = end + 2, done + 1
            if pos != len(buf):
                raise MemcacheUnexpectedCloseError(_OUT_OF_STEP)
    except BaseException:
        client.close()
        raise
    return damaged
